"""What the reproduction suite runs: data sizes, the base model, the methods at a matched budget of
16 active ranks per FFN projection, and the studies (claims a-e of the ReMix paper, SMoRA's claim).

A run is a `remora train` of a shipped recipe (configs/*.yaml) with command-line overrides, then
`remora eval` of its adapter on the test split. Nothing here trains or scores by itself."""

FULL = {
    "sizes": {"train": 600, "validation": 60, "test": 150, "creatures": 250},
    "base_steps": 3000,
    "steps": 720,
    "seeds": [0, 1, 2],
    "lrs": [1e-3, 3e-3, 1e-2],
}
QUICK = {  # every part of the pipeline, a few steps each: checks that each number is produced
    "sizes": {"train": 60, "validation": 12, "test": 24, "creatures": 40},
    "base_steps": 30,
    "steps": 6,
    "seeds": [0],
    "lrs": [3e-3, 1e-2],
}

# Llama-shaped, hidden 128, 4 layers: small enough for ~60 fine-tuning runs in about an hour on 2 cores.
MODEL = ["--preset", "toy", "--set", "hidden_size=128", "--set", "intermediate_size=352", "--set", "num_hidden_layers=4",
         "--set", "num_attention_heads=4", "--set", "num_key_value_heads=2", "--set", "max_position_embeddings=256"]
VOCAB = 1024

FFN = "[gate_proj,up_proj,down_proj]"
# Every method adapts the FFN projections with 16 active ranks per token (HydraLoRA: one shared
# rank-8 A and 3 rank-8 B heads, the closest it gets); `remora inspect` reports the exact counts.
METHODS = {
    "lora": ("lora", ["adapter.r=16", "adapter.lora_alpha=32"]),
    "rslora": ("rslora", ["adapter.r=16", "adapter.lora_alpha=32"]),  # LoRA's alpha: scale alpha/sqrt(r)
    "molora": ("molora", ["adapter.r=4", "adapter.lora_alpha=8", "adapter.num_experts=4"]),
    "topk": ("topk", ["adapter.r=8", "adapter.lora_alpha=16", "adapter.num_experts=8", "adapter.top_k=2",
                      "adapter.method_pattern={}"]),
    "hydra": ("hydra", ["adapter.r=8", "adapter.lora_alpha=16", "adapter.num_experts=3"]),
    "smora": ("smora", ["adapter.r=64", "adapter.lora_alpha=32", "adapter.top_k=16"]),
    "remix": ("remix", ["adapter.r=8", "adapter.num_experts=8", "adapter.top_k=2", "train.samples=4"]),
}
METHOD_ORDER = list(METHODS)
PAPER_TABLE1_AVG = {"remix": 60.77, "rslora": 57.95, "topk": 57.43, "hydra": 55.10}  # Llama-3-8B, for context

# ReMix studies: one setting changed from the main ReMix run (k 2, M 4, RLOO, top-k inference).
K_VALUES = [1, 2, 3, 4]
M_VALUES = [2, 4, 8]
OBJECTIVES = ["rloo", "reinforce", "frozen"]
PAPER_K = {1: 56.18, 2: 59.67, 3: 61.33, 4: 64.22}
PAPER_M = {2: 56.03, 4: 56.79, 8: 57.47, 32: 58.83}


# If ReMix loses, what else might have helped (spec's knobs), each one change from the main run.
INVESTIGATIONS = {
    "router_lr x0.1": ["optim.router_lr={lr10}"],
    "router_lr x10": ["optim.router_lr={lr_x10}"],
    "omega_alpha 4 (2x omega)": ["adapter.omega_alpha=4"],
    "routing: sequence": ["adapter.routing=sequence"],
}


def common_overrides(work, scale, threads):
    """Keys every fine-tuning run shares: same data, data order (seed), steps, schedule and threads."""
    return [f"threads={threads}", f"model.path={work}/base/model", f"data.train={work}/data/train.jsonl",
            f"data.validation={work}/data/validation.jsonl", "data.format=prompt_completion",
            "data.max_seq_len=128", f"train.steps={scale['steps']}", "train.batch_size=8",
            "schedule.type=cosine", "schedule.warmup_steps=10", "output.overwrite=true",
            "output.checkpoint_every=0", "log.every=5", "eval.every=0", f"adapter.target_modules={FFN}"]


def method_run(method, seed, lr, extra=(), name=None):
    recipe, overrides = METHODS[method]
    label = name or method
    return {"name": f"{label}_lr{lr:g}_seed{seed}", "method": method, "recipe": f"configs/{recipe}.yaml",
            "overrides": overrides + [f"optim.lr={lr}", f"train.seed={seed}"] + list(extra), "seed": seed, "lr": lr}


def sweep_runs(scale):
    """Seed 0 of each method at each learning rate; the best validation loss picks the method's lr."""
    return [method_run(m, 0, lr) for m in METHOD_ORDER for lr in scale["lrs"]]


def main_runs(scale, lr_of):
    return [method_run(m, s, lr_of[m]) for m in METHOD_ORDER for s in scale["seeds"]]


def study_runs(scale, lr):
    """ReMix with one setting changed; the unchanged setting is the main ReMix run."""
    def remix(overrides=(), name=None):
        return [method_run("remix", s, lr, overrides, name) for s in scale["seeds"]]

    # (study, values, the main run's value, the override, the run name), each a one-key change.
    sweeps = [("k", K_VALUES, 2, "adapter.top_k={}", "remix_k{}"), ("M", M_VALUES, 4, "train.samples={}", "remix_m{}")]
    runs = {(study, v): remix([key.format(v)], name.format(v)) if v != main else remix()
            for study, values, main, key, name in sweeps for v in values}
    for label, overrides in INVESTIGATIONS.items():
        filled = [o.format(lr10=lr / 10, lr_x10=lr * 10) for o in overrides]
        runs[("investigation", label)] = remix(filled, "remix_" + "".join(ch if ch.isalnum() else "_" for ch in label).strip("_"))
    for objective in OBJECTIVES:
        runs[("objective", objective)] = (remix([f"adapter.router_objective={objective}"], f"remix_{objective}")
                                          if objective != "rloo" else remix())
    return runs
