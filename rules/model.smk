rule prepare_model:
    input:
        checked=ancient(CHECKED),
    output:
        model=directory("models/base"),
    params:
        p=P("model"),
    log:
        "logs/model.log",
    shell:
        "python scripts/prepare_model.py --params {params.p:q} --out {output.model} 2> >(tee {log} >&2)"
