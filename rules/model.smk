rule prepare_model:
    input:
        checked=ancient(CHECKED),
    output:
        model=directory("models/base"),
    params:
        p=P("model.name", "model.dtype", "model.trust_remote_code"),
    benchmark:
        "benchmarks/model.tsv"
    log:
        "logs/model.log",
    shell:
        "python scripts/prepare_model.py --params {params.p:q} --out {output.model} 2> >(tee {log} >&2)"
