"""`selfalign plan`: what `dvc repro` would run now, and what it will cost, before anything runs.

pending.py finds the stages (dvc status, followed down the DAG); work.py sizes each from params.yaml,
the inputs and the last run's metrics; estimate.py turns sizes into time (rates measured on the last
run) and memory (from the model's config, no weights loaded), and checks what cannot run.
"""
