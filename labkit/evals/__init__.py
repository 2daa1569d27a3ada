"""Jobs that orchestrate renders: the benchmarks and comparisons (issue 20's floor between the façade and core).

- `labkit.evals.toyworld`: the toy world's prompt-adherence benchmark (`labkit eval toyworld`)
- `labkit.evals.toymotion`: the toy motion benchmark (`labkit eval toymotion`)
- `labkit.evals.controller`: the controller benchmark on a suite of requests (`labkit eval controller`)
- `labkit.evals.adapters`: checkpoints × weights × seeds on fixed prompts (`labkit compare adapters`)

They take a lab as an argument and render through its methods (`prepare`, `load_pipeline`, ...), so
nothing here imports the façade (`labkit.lab`, `labkit.render`); what they score with lives in core
(`labkit.toyworld.detect`, `labkit.toyworld.motion_score`).
"""
