"""Sharded execution: tensor/expert-parallel runs under torchrun and accelerate's offloaded loading.

``worker`` is what each torchrun rank executes; ``launch`` starts a job, enforces its deadline and
reports a dead or hung rank as a typed failure; ``plans`` says which plans apply to a model (with the
typed skip where one cannot run); ``offload`` is the single-process device_map run.
"""
