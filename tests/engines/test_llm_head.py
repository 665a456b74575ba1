"""The head engine (LLM backbone + LoRA + a linear layer per label) on a tiny random Gemma 3, on CPU."""

from __future__ import annotations

import pytest

from issuelab.config import parse_config
from issuelab.engines.llm_head import HeadOptions, issue_ids, layer_view
from issuelab.labeler import Labeler
from issuelab.train import train_run

from ..helpers import FILLER, SIGNALS, TOY_CONFIG, make_issues
from ..helpers.tiny_gemma import build_tiny_gemma

pytestmark = pytest.mark.torch  # tiny models, trained on the CPU


@pytest.fixture(autouse=True, scope="module")
def lora_extra():
    """Checked when the tests run, not when they are collected: peft takes seconds to import."""
    pytest.importorskip("peft", reason="the lora extra is not installed: pip install -e '.[lora]'")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    corpus = [" ".join(words) for words in SIGNALS.values()] + [" ".join(FILLER)] * 3
    return build_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma"), corpus, vocab_size=200)


def config_for(base, multi_label: str = "auto"):
    import tomllib

    text = TOY_CONFIG.replace('multi_label = "auto"', f'multi_label = "{multi_label}"') + (
        f'\n[train.head]\nbase_model = "{base}"\nmax_tokens = 48\nepochs = 6\nbatch_size = 8\nmicro_batch_size = 8\n'
        'learning_rate = 5e-3\nhead_learning_rate = 2e-2\nrank = 8\ninference_dtype = "float32"\n'
    )
    return parse_config(tomllib.loads(text))


def micro_f1(labeler, issues) -> float:
    predictions = labeler.predict(issues)
    tp = sum(len(set(p.labels) & set(i.labels)) for p, i in zip(predictions, issues))
    return 2 * tp / (sum(len(p.labels) for p in predictions) + sum(len(i.labels) for i in issues))


@pytest.fixture(scope="module")
def trained(tiny_base, tmp_path_factory):
    issues = make_issues(240, seed=5)
    run = tmp_path_factory.mktemp("head") / "run"
    labeler, _ = train_run(config_for(tiny_base), issues[:160], issues[160:200], run, engine="head")
    return labeler, run, issues[200:]


def test_head_learns_a_multi_label_task_with_bce(trained):
    labeler, _, test = trained
    info = labeler.manifest["engine_info"]
    assert info["multi_label"] is True
    losses = [r["train_loss"] for r in info["history"]]
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses
    assert micro_f1(labeler, test) > 0.6  # always answering the commonest label scores about 0.45 here
    scores = labeler.engine.predict_scores(test)
    assert scores.shape == (len(test), 4) and ((scores >= 0) & (scores <= 1)).all()
    assert abs(scores.sum(axis=1) - 1.0).max() > 0.1  # independent sigmoids, not a distribution


def test_head_reloads_identically_from_safetensors(trained):
    labeler, run, test = trained
    loaded = Labeler.load(run)
    assert loaded.engine.predict_scores(test) == pytest.approx(labeler.engine.predict_scores(test), abs=1e-5)
    saved = {p.relative_to(run / "model").as_posix() for p in (run / "model").rglob("*") if p.is_file()}
    assert {"head.safetensors", "adapter/adapter_model.safetensors", "engine.json"} <= saved
    assert not [p for p in saved if p.endswith((".bin", ".pt", ".pkl"))]
    assert_evidence_names_issues_carrying_the_label(loaded, labeler, test[0], make_issues(240, seed=5))


def assert_evidence_names_issues_carrying_the_label(loaded, labeler, issue, issues):
    """`explain`: the training issues closest to this one in the model's pooled states, among those carrying
    each label (make_issues ids are 1-based); the same after loading the run."""
    evidence = loaded.explain(issue, issue.labels)
    for label, (line,) in evidence.items():
        named = [int(ref.split(" ")[0]) for ref in line.removeprefix("similar labeled issues: ").split(", ")]
        assert len(named) == 3 and all(label in issues[n - 1].labels for n in named)
    assert evidence == labeler.explain(issue, issue.labels)


def test_head_on_single_label_data_gives_distributions(tiny_base, tmp_path):
    issues = make_issues(120, seed=6, multi_label=False)
    config = config_for(tiny_base)
    config.train.engine_options["head"]["epochs"] = 1
    labeler, _ = train_run(config, issues[:100], None, tmp_path / "run", engine="head")
    assert labeler.manifest["engine_info"]["multi_label"] is False
    scores = labeler.engine.predict_scores(issues[100:])
    assert scores.sum(axis=1) == pytest.approx(1.0)
    assert all(len(p.labels) == 1 for p in labeler.predict(issues[100:]))


def test_issue_ids_keep_the_title_and_cut_the_body(trained):
    labeler, _, _ = trained
    tokenizer = labeler.engine.tokenizer
    title = "crash error"
    issue = make_issues(1)[0]
    issue.title, issue.body = title, " ".join(["docs"] * 500)
    ids = issue_ids(tokenizer, issue, 16)
    assert len(ids) == 16
    assert ids[: len(tokenizer(f"{title}\n\n")["input_ids"])] == tokenizer(f"{title}\n\n")["input_ids"]


def test_frozen_head_learns_from_the_first_layer_and_reloads(tiny_base, tmp_path):
    issues = make_issues(240, seed=7)
    config = config_for(tiny_base)
    config.train.engine_options["head"].update(finetune="no", layers=1, C=1.0)
    labeler, _ = train_run(config, issues[:160], issues[160:200], tmp_path / "run", engine="head")
    assert labeler.engine.backbone.config.num_hidden_layers == 1 and len(labeler.engine.backbone.layers) == 1
    assert labeler.manifest["engine_info"]["finetuned"] is False
    assert micro_f1(labeler, issues[200:]) > 0.6  # the commonest label alone: about 0.45
    scores = labeler.engine.predict_scores(issues[200:])
    loaded = Labeler.load(tmp_path / "run")
    assert len(loaded.engine.backbone.layers) == 1
    assert loaded.engine.predict_scores(issues[200:]) == pytest.approx(scores, abs=1e-6)
    saved = {p.name for p in (tmp_path / "run" / "model").rglob("*") if p.is_file()}
    assert saved == {"head.safetensors", "engine.json", "examples.npz"}  # no adapter: the backbone is the base model's
    assert_evidence_names_issues_carrying_the_label(loaded, labeler, issues[200], issues)


def test_layer_views_compose_to_the_whole_backbone():
    """Frozen layers cached, trained layers on top: layers 0..k-1 then k..n-1 (each reading the other's
    states) give the whole model's output, padding and a sliding-window layer above the cut included."""
    import torch
    from transformers import Gemma3TextConfig, Gemma3TextModel

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=8, pad_token_id=0,
        layer_types=["full_attention", "sliding_attention", "sliding_attention", "full_attention"],
    )  # fmt: skip
    backbone = Gemma3TextModel(config).eval()
    ids = torch.randint(3, 50, (2, 40))
    mask = torch.ones_like(ids)
    mask[1, 25:] = 0
    with torch.no_grad():
        whole = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        for cut in (1, 2, 3):
            states = layer_view(backbone, 0, cut, final_norm=False)(input_ids=ids, attention_mask=mask).last_hidden_state
            top = layer_view(backbone, cut, 4, final_norm=True)(inputs_embeds=states, attention_mask=mask).last_hidden_state
            assert torch.allclose(top[0], whole[0], atol=1e-5) and torch.allclose(top[1, :25], whole[1, :25], atol=1e-5)
    assert len(backbone.layers) == 4 and backbone.config.num_hidden_layers == 4  # the views left it whole


def test_head_with_cached_frozen_layers_trains_the_top_layer_only_and_reloads(tiny_base, tmp_path):
    from safetensors import safe_open

    issues = make_issues(240, seed=5)
    config = config_for(tiny_base)
    config.train.engine_options["head"].update(train_layers=1)
    labeler, _ = train_run(config, issues[:160], issues[160:200], tmp_path / "run", engine="head")
    assert labeler.manifest["engine_info"]["frozen_layers_cached"] == 1
    assert micro_f1(labeler, issues[200:]) > 0.6  # the commonest label alone: about 0.45
    with safe_open(tmp_path / "run" / "model" / "adapter" / "adapter_model.safetensors", "pt") as adapter:
        layers = {key.split("layers.")[1].split(".")[0] for key in adapter.keys()}
    assert layers == {"1"}  # LoRA in the top layer only; layer 0 is the base model's
    loaded = Labeler.load(tmp_path / "run")
    assert loaded.engine.predict_scores(issues[200:]) == pytest.approx(labeler.engine.predict_scores(issues[200:]), abs=1e-5)
    assert loaded.explain(issues[200], issues[200].labels) == labeler.explain(issues[200], issues[200].labels)


def test_head_trains_with_bfloat16_products_and_float32_weights_where_it_answers_in_bfloat16(tiny_base, tmp_path):
    import torch
    from safetensors import safe_open

    issues = make_issues(240, seed=5)
    config = config_for(tiny_base)
    config.train.engine_options["head"].update(train_layers=1, inference_dtype="bfloat16")
    products = set()

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Linear) and torch.is_grad_enabled():
            products.add(output.dtype)

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        labeler, _ = train_run(config, issues[:160], issues[160:200], tmp_path / "run", engine="head")
    finally:
        hook.remove()
    assert products == {torch.bfloat16}  # every product of the training steps
    assert labeler.manifest["engine_info"]["autocast"] == "cpu"
    with safe_open(tmp_path / "run" / "model" / "adapter" / "adapter_model.safetensors", "pt") as adapter:
        assert {adapter.get_tensor(key).dtype for key in adapter.keys()} == {torch.float32}
    assert micro_f1(labeler, issues[200:]) > 0.6  # the commonest label alone: about 0.45
    # a loaded run answers with bfloat16 weights (LoRA merged), the trained one through its products: within
    # bfloat16's rounding (0.007 here)
    loaded = Labeler.load(tmp_path / "run")
    assert loaded.engine.predict_scores(issues[200:]) == pytest.approx(labeler.engine.predict_scores(issues[200:]), abs=0.02)


def test_a_second_seed_reuses_the_frozen_states_and_trains_its_own_head(tiny_base):
    from issuelab.data import Label
    from issuelab.engines import Task
    from issuelab.engines.llm_head import HeadEngine

    issues = make_issues(60, seed=9)
    task = Task(tuple(Label(name, "") for name in SIGNALS), multi_label=True)
    options = dict(base_model=str(tiny_base), max_tokens=48, epochs=1, inference_dtype="float32", train_layers=1)
    first, second = HeadEngine(HeadOptions(**options)), HeadEngine(HeadOptions(**options))
    first.fit(issues[:40], None, task, 0)
    second.fit(issues[:40], None, task, 1)
    assert "frozen_states_reused" not in first.info and second.info["frozen_states_reused"] is True
    assert abs(first.predict_scores(issues[40:]) - second.predict_scores(issues[40:])).max() > 1e-4  # its own seed
    other = HeadEngine(HeadOptions(**options))
    other.fit(issues[:39], None, task, 0)  # other issues: read through the frozen layers again
    assert "frozen_states_reused" not in other.info


def test_loaded_seeds_of_a_head_share_their_frozen_layers_and_read_each_issue_once(tiny_base, tmp_path):
    import gc

    import torch

    from issuelab.engines import llm_head

    llm_head._SHARED_FROZEN.clear()
    issues = make_issues(60, seed=8, multi_label=False)
    config = config_for(tiny_base)
    config.train.engine_options["head"].update(epochs=1, train_layers=1)
    config.train.engine_options["ensemble"] = {"engines": ["head", "head"], "weights": [1, 1]}
    labeler, _ = train_run(config, issues[:40], None, tmp_path / "run", engine="ensemble")
    first, second = Labeler.load(tmp_path / "run").engine.members
    assert first.backbone.layers[0] is second.backbone.layers[0] and first.backbone.embed_tokens is second.backbone.embed_tokens
    assert first.backbone.layers[1] is not second.backbone.layers[1]  # each seed's own LoRA, merged into its top layer
    reads = []
    for member in (first, second):
        member.bottom = lambda bottom=member.bottom, **inputs: reads.append(1) or bottom(**inputs)
    for member, trained in zip((first, second), labeler.engine.members):  # the whole models' answers, in one pass
        assert member.predict_scores(issues[40:]) == pytest.approx(trained.predict_scores(issues[40:]), abs=1e-5)
    assert len(reads) == 20  # each issue went through the shared frozen layer once, for both members
    names = labeler.label_names
    assert first.explain(issues[40], issues[40].labels, names) == labeler.engine.members[0].explain(issues[40], issues[40].labels, names)
    rows = [issue_ids(first.tokenizer, issue, 48) for issue in issues[40:43]]  # several issues a call, as on a GPU: padded
    with torch.inference_mode():
        together, alone = first._pooled_rows(rows), torch.cat([first._pooled_rows([row]) for row in rows])
    assert torch.allclose(together, alone, atol=1e-5)
    del first, second, member  # (the loop variable holds the second)
    gc.collect()
    assert not llm_head._SHARED_FROZEN  # the shared layers and states go with the last run that held them


def test_head_rejects_more_layers_than_the_base_has(tiny_base, tmp_path):
    from issuelab.errors import IssuelabError

    config = config_for(tiny_base)
    config.train.engine_options["head"].update(finetune="no", layers=3)
    with pytest.raises(IssuelabError, match="layers = 3, but the base model has 2 decoder layers"):
        train_run(config, make_issues(40, seed=1), None, tmp_path / "run", engine="head")
    config.train.engine_options["head"].update(finetune="yes", layers=1, train_layers=2)
    with pytest.raises(IssuelabError, match="train_layers = 2, but only 1 decoder layers are run"):
        train_run(config, make_issues(40, seed=1), None, tmp_path / "run2", engine="head")


def test_head_options_are_checked():
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        HeadOptions(batch_size=8, micro_batch_size=3)
    with pytest.raises(ValueError, match="inference_dtype"):
        HeadOptions(inference_dtype="int8")
    with pytest.raises(ValueError, match="finetune"):
        HeadOptions(finetune="auto")
    with pytest.raises(ValueError, match='train_layers chooses where LoRA goes: it needs finetune = "yes"'):
        HeadOptions(finetune="no", train_layers=2)
    with pytest.raises(ValueError, match="layers >= 0"):
        HeadOptions(layers=-1)


def test_ensemble_trains_a_repeated_engine_with_the_next_seed(tiny_base, tmp_path):
    from issuelab.engines.registry import create_engine
    from issuelab.train import make_task

    issues = make_issues(120, seed=8, multi_label=False)
    config = config_for(tiny_base)
    config.train.engine_options["head"]["epochs"] = 1
    config.train.engine_options["ensemble"] = {"engines": ["tfidf", "head", "head"], "weights": [2, 1, 1]}
    labeler, _ = train_run(config, issues[:100], None, tmp_path / "run", engine="ensemble")
    assert set(labeler.manifest["engine_info"]["weights"]) == {"tfidf", "head", "head-2"}
    assert {p.name for p in (tmp_path / "run/model").iterdir()} == {"tfidf", "head", "head-2", "ensemble.json"}
    first, second = (m.predict_scores(issues[100:]) for m in labeler.engine.members[1:])
    alone = create_engine("head", config.engine_options("head"))
    alone.fit(issues[:100], None, make_task(config, issues[:100]), 1)
    assert second == pytest.approx(alone.predict_scores(issues[100:]), abs=1e-5)  # seed 1, as a run of its own
    assert abs(first - second).max() > 1e-3
    loaded = Labeler.load(tmp_path / "run")
    assert loaded.engine.predict_scores(issues[100:]) == pytest.approx(labeler.engine.predict_scores(issues[100:]), abs=1e-5)
