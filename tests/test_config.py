"""Paper configs: profiles, validation errors that name the field, run parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import unlearnlib.config as config_mod
from unlearnlib.config import (
    PROFILES,
    Claim,
    ConfigError,
    available_papers,
    load_paper,
    method_config,
    parse_seeds,
    validate_settings,
)
from unlearnlib.harness import run_paper
from unlearnlib.methods import METHODS, method_spec
from unlearnlib.train import TrainConfig

PAPER = "deep_unlearning"


def _yaml_profiles(paper: str) -> list[str]:
    raw = yaml.safe_load((config_mod.PAPERS_DIR / f"{paper}.yaml").read_text())
    return list(raw["profiles"])


def test_deep_unlearning_is_available():
    assert PAPER in available_papers()


EVERY_PROFILE = [(paper, profile) for paper in available_papers() for profile in _yaml_profiles(paper)]


@pytest.mark.parametrize("paper,profile", EVERY_PROFILE, ids=[f"{a}-{b}" for a, b in EVERY_PROFILE])
def test_load_paper_every_paper_and_profile(paper, profile):
    cfg = load_paper(paper, profile)
    assert cfg.id == paper and cfg.profile == profile
    s = cfg.settings
    assert s.seeds and s.models and s.methods and s.split.all_scenarios()
    for name in s.methods:  # every configured method builds its Config
        mc = method_config(name, s.methods[name], s.train)
        assert isinstance(mc, method_spec(name).Config)
    assert cfg.profile_label and cfg.chapter


def test_every_paper_declares_the_three_profiles():
    for paper in available_papers():
        assert set(PROFILES) <= set(_yaml_profiles(paper)), paper


def _raw() -> dict:
    return yaml.safe_load((config_mod.PAPERS_DIR / f"{PAPER}.yaml").read_text())


@pytest.mark.parametrize("profile", _yaml_profiles(PAPER))
def test_profiles_merge_key_by_key(profile):
    raw = _raw()
    base, over = raw["settings"], raw["profiles"][profile] or {}
    s = load_paper(PAPER, profile).settings
    assert s.dataset == over.get("dataset", base["dataset"])
    for key, value in base["train"].items():  # overridden keys win, the others are kept
        assert getattr(s.train, key) == over.get("train", {}).get(key, value), key
    for name, mspec in over.get("models", {}).items():
        if mspec is not None:
            for key in ("width", "depth", "heads", "patch"):  # the ViT's options too
                assert getattr(s.models[name], key) == mspec.get(key, (base["models"].get(name) or {}).get(key)), \
                    (name, key)
    for name, opts in over.get("methods", {}).items():
        if opts is None:
            assert name not in s.methods
            continue
        mc = method_config(name, s.methods[name], s.train)
        for key, value in opts.items():
            assert getattr(mc, key) == value, (name, key)
    if "split" in over and "forget" in over["split"]:
        assert [sc.classes for sc in s.split.all_scenarios()] == over["split"]["forget"]


def test_paper_profile_is_the_papers_setting():
    s = load_paper(PAPER, "paper").settings
    assert s.dataset == "cifar10" and s.train.epochs == 350 and s.train.lr == 0.1
    du = method_config("deep_unlearning", s.methods["deep_unlearning"], s.train)
    assert (du.n_samples, du.alpha_r, du.alpha_f, du.max_patches) == (900, 100.0, 3.0, 10000)


def test_retrain_inherits_the_profiles_recipe():
    s = load_paper(PAPER, "smoke").settings
    rt = method_config("retrain", s.methods["retrain"], s.train)
    assert (rt.epochs, rt.lr, rt.batch_size, rt.optimizer) == (s.train.epochs, s.train.lr, s.train.batch_size,
                                                                 s.train.optimizer)
    assert method_config("retrain", {"epochs": 2}, s.train).epochs == 2  # a method option still wins


def test_load_paper_auto_profile_on_cpu():
    import torch

    expected = "paper" if torch.cuda.is_available() else "cpu"
    assert load_paper(PAPER, "auto").profile == expected


def test_unknown_paper_lists_valid_names():
    with pytest.raises(ConfigError) as exc:
        load_paper("deep_unlearnin")
    msg = str(exc.value)
    assert "'deep_unlearnin'" in msg and "valid papers" in msg and PAPER in msg


def test_unknown_profile_lists_valid_names():
    with pytest.raises(ConfigError) as exc:
        load_paper(PAPER, "gpu")
    msg = str(exc.value)
    assert "'gpu'" in msg
    for p in PROFILES:
        assert p in msg


@pytest.mark.parametrize("bad", [3, None, ["cpu"]])
def test_non_string_profile(bad):
    with pytest.raises(ConfigError, match="profile"):
        load_paper(PAPER, bad)


# ----------------------------------------------------------------------------------------------
# method configs


def test_unknown_method_key_names_the_key_and_lists_valid_keys():
    with pytest.raises(ConfigError) as exc:
        method_config("deep_unlearning", {"alpha": 3, "n_samples": 9}, TrainConfig())
    msg = str(exc.value)
    assert "alpha" in msg and "unknown key" in msg
    for valid in ("n_samples", "alpha_r", "alpha_f", "max_patches", "path"):
        assert valid in msg


@pytest.mark.parametrize("method,key,value,expect", [
    ("finetune", "epochs", "5", "epochs: expected an integer"),
    ("finetune", "lr", True, "lr: expected a number"),
    ("neggrad", "max_steps", 2.5, "max_steps"),
    ("deep_unlearning", "augment_samples", "yes", "augment_samples: expected bool"),
    ("deep_unlearning", "alpha_r", "100", "alpha_r: expected a number"),
])
def test_wrong_type_names_the_field(method, key, value, expect):
    with pytest.raises(ConfigError, match=expect):
        method_config(method, {key: value}, TrainConfig())


def test_ints_are_accepted_for_floats_and_kept_exact():
    mc = method_config("deep_unlearning", {"alpha_r": 100, "n_samples": 9}, TrainConfig())
    assert mc.alpha_r == 100.0 and isinstance(mc.alpha_r, float) and mc.n_samples == 9


def test_unknown_method_name():
    with pytest.raises(KeyError, match="valid methods: .*deep_unlearning"):
        method_config("deep_unlearn", {}, TrainConfig())


@pytest.fixture
def patched_paper(tmp_path, monkeypatch):
    """Write a modified copy of the paper YAML into a tmp papers dir and point the loader at it."""

    def write(edit) -> str:
        raw = yaml.safe_load((config_mod.PAPERS_DIR / f"{PAPER}.yaml").read_text())
        edit(raw)
        d = tmp_path / "papers"
        d.mkdir(exist_ok=True)
        (d / f"{PAPER}.yaml").write_text(yaml.safe_dump(raw))
        monkeypatch.setattr(config_mod, "PAPERS_DIR", d)
        return PAPER

    return write


def test_yaml_unknown_method_key(patched_paper):
    patched_paper(lambda raw: raw["profiles"]["smoke"]["methods"]["deep_unlearning"].update(alpha=3))
    load_paper(PAPER, "cpu")  # other profiles are unaffected
    with pytest.raises(ConfigError) as exc:
        load_paper(PAPER, "smoke")
    msg = str(exc.value)
    assert "deep_unlearning.profiles.smoke.methods.deep_unlearning" in msg  # where the typo is
    assert "alpha" in msg and "valid keys" in msg and "alpha_r" in msg


@pytest.mark.parametrize("where,key,bad", [
    ("deep_unlearning", "path", "lowrnk"),  # a method's string choice
    ("deep_unlearning", "retain_selection", "frist"),
    ("retrain", "optimizer", "adamw"),  # the training recipe's choices too
])
def test_yaml_misspelled_choice_fails_at_load_time(patched_paper, isolated_env, where, key, bad):
    patched_paper(lambda raw: raw["profiles"]["smoke"]["methods"].setdefault(where, {}).update({key: bad}))
    with pytest.raises(ConfigError) as exc:
        load_paper(PAPER, "smoke")
    msg = str(exc.value)
    assert f"methods.{where}.{key}" in msg and repr(bad) in msg and "valid:" in msg
    with pytest.raises(ConfigError):  # and a run stops before it loads data or trains anything
        run_paper(PAPER, "smoke", progress=False)
    for var in ("UNLEARNLIB_RESULTS", "UNLEARNLIB_CACHE"):
        assert _tree(Path(isolated_env[var])) == [], var


def test_misspelled_choice_in_code_fails_before_the_method_runs(tiny_problem):
    import dataclasses

    spec = METHODS.get("deep_unlearning")
    cfg = dataclasses.replace(spec.Config(), path="lowrnk")
    retain, forget = tiny_problem.loaders()
    with pytest.raises(ConfigError, match=r"methods\.deep_unlearning\.path: 'lowrnk'.*valid: exact, lowrank"):
        spec(object(), retain=retain, forget=forget, cfg=cfg, device="cpu")
    assert retain.reads == 0 and forget.reads == 0


def test_yaml_wrong_type_in_train(patched_paper):
    patched_paper(lambda raw: raw["profiles"]["smoke"]["train"].update(epochs="5"))
    with pytest.raises(ConfigError,
                       match=r"deep_unlearning\.profiles\.smoke\.train\.epochs: expected an integer, got str '5'"):
        load_paper(PAPER, "smoke")


def test_yaml_wrong_type_bool_for_number(patched_paper):
    patched_paper(lambda raw: raw["profiles"]["smoke"]["train"].update(lr=True))
    with pytest.raises(ConfigError, match=r"train\.lr: expected a number, got bool True"):
        load_paper(PAPER, "smoke")


def test_yaml_unknown_settings_key(patched_paper):
    patched_paper(lambda raw: raw["profiles"]["smoke"].update(epochs=3))
    with pytest.raises(ConfigError, match="unknown key.*epochs.*valid keys: dataset"):
        load_paper(PAPER, "smoke")


def test_yaml_vit_options_and_a_cnn_given_one(patched_paper):
    assert load_paper(PAPER, "cpu").settings.models["vit"].patch == 7
    patched_paper(lambda raw: raw["profiles"]["smoke"]["models"]["resnet18"].update(depth=3))
    load_paper(PAPER, "cpu")  # other profiles are unaffected
    with pytest.raises(ConfigError, match=r"smoke\.models\.resnet18: model 'resnet18' has no option depth "
                                          r"\(its options: none besides width\)"):
        load_paper(PAPER, "smoke")


def test_yaml_unknown_model_method_metric(patched_paper):
    patched_paper(lambda raw: raw["profiles"]["smoke"]["models"].update(resnet19={"width": 4}))
    with pytest.raises(ConfigError, match="resnet19.*valid models"):
        load_paper(PAPER, "smoke")


def test_yaml_null_removes_a_method(patched_paper):
    patched_paper(lambda raw: raw["profiles"]["smoke"]["methods"].update(neggrad=None))
    s = load_paper(PAPER, "smoke").settings
    assert "neggrad" not in s.methods and "neggrad_plus" in s.methods


# ----------------------------------------------------------------------------------------------
# parse_seeds


@pytest.mark.parametrize("value,expected", [
    (None, [42, 43]), ("", [42, 43]), (7, [7]), ([1, 2, 3], [1, 2, 3]), ((4, 5), [4, 5]), ("1,2", [1, 2]),
    (" 3, 4 ,5", [3, 4, 5]), ("9", [9]),
])
def test_parse_seeds_accepts(value, expected):
    assert parse_seeds(value, [42, 43]) == expected


@pytest.mark.parametrize("value", [1.5, True, [1, 2.0], [], "a,b", {"seed": 1}, [1, True]])
def test_parse_seeds_rejects(value):
    with pytest.raises(ConfigError, match="seeds"):
        parse_seeds(value, [42])


def test_parse_seeds_does_not_alias_the_default():
    default = [42]
    out = parse_seeds(None, default)
    out.append(1)
    assert default == [42]


# ----------------------------------------------------------------------------------------------
# run_paper validates its parameters before touching the filesystem


def _tree(p: Path) -> list[str]:
    return sorted(str(x.relative_to(p)) for x in p.rglob("*"))


@pytest.mark.parametrize("kwargs,field", [
    ({"device": 3}, "device"), ({"seeds": 1.5}, "seeds"), ({"device": "tpu"}, "device"),
    ({"methods": ["deep_unlearning", "no_such_method"]}, "methods"), ({"methods": "retrain"}, "methods"),
    ({"profile": "turbo"}, "profile"), ({"executor": "dask"}, "executor"),
    ({"executor": "ray", "workers": -1}, "workers"), ({"executor": "local", "workers": 2}, "workers"),
    ({"threads": 1.5}, "threads"),
])
def test_run_paper_rejects_bad_parameters_before_writing(isolated_env, kwargs, field):
    kwargs = {"profile": "smoke", **kwargs}
    with pytest.raises(ConfigError, match=field):
        run_paper(PAPER, progress=False, **kwargs)
    for var in ("UNLEARNLIB_RESULTS", "UNLEARNLIB_CACHE", "UNLEARNLIB_DATA"):
        assert _tree(Path(isolated_env[var])) == [], var


def test_run_paper_cuda_without_cuda(isolated_env):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        run_paper(PAPER, "smoke", device="cuda", progress=False)
    assert _tree(Path(isolated_env["UNLEARNLIB_RESULTS"])) == []


# ----------------------------------------------------------------------------------------------
# claims are validated with the paper: one error naming the claim and the field


@pytest.mark.parametrize("change,expect", [
    ({"kind": "better"}, r"claims\.c\.kind: 'better' is not a valid choice; valid: threshold, vs_method, vs_best"),
    ({"op": "=="}, r"claims\.c\.op: '==' is not a valid choice; valid: <, <=, >, >="),
    ({"threshold": None}, r"claims\.c\.threshold: a threshold claim needs a threshold"),
    ({"scenario_kind": "subset"}, r"claims\.c\.scenario_kind: 'subset' is not a valid choice; valid: '', class, "
                                  r"random, backdoor"),
    ({"kind": "vs_method", "transform": "ratio", "reference": "retrain"}, r"claims\.c\.transform: 'ratio'"),
    ({"kind": "vs_method"}, r"claims\.c\.reference: a vs_method claim needs a reference"),
    ({"kind": "vs_best"}, r"claims\.c\.references: a vs_best claim needs methods"),
    ({"requires_metric": "asr"}, r"claims\.c\.requires_metric: a precondition needs requires_threshold"),
    ({"requires_metric": "asr", "requires_threshold": 50.0, "requires_op": "=>"}, r"claims\.c\.requires_op: '=>'"),
    ({"requires_metric": "asr", "requires_threshold": 50.0, "requires_method": "boundary_shrink"},
     r"unknown method 'boundary_shrink'"),
])
def test_bad_claims_are_rejected_with_the_field(change, expect):
    import dataclasses

    cfg = load_paper(PAPER, "smoke")
    good = Claim(id="c", text="t", source="s", kind="threshold", method="deep_unlearning", metric="test_forget_acc",
                 op="<", threshold=1.0)
    validate_settings(dataclasses.replace(cfg, claims=[good]))  # the base claim is valid
    with pytest.raises(ConfigError, match=expect):
        validate_settings(dataclasses.replace(cfg, claims=[dataclasses.replace(good, **change)]))


@pytest.mark.parametrize("value,expect", [
    ({"neggrad": ["class"], "nosuch": ["class"]}, r"method_scenarios\.nosuch: not a configured method; valid: "),
    ({"neggrad": ["klass"]}, r"method_scenarios\.neggrad: \['klass'\]; give a non-empty list of class, random, "
                             r"backdoor"),
    ({"neggrad": []}, r"method_scenarios\.neggrad: \[\]; give a non-empty list"),
    ({"retrain": ["class"]}, r"method_scenarios\.retrain: the retrain reference runs on every scenario"),
    ({"neggrad": ["random"]}, r"method_scenarios\.neggrad: no scenario of kind random in this run"),
])
def test_bad_method_scenarios_are_rejected_with_the_field(patched_paper, value, expect):
    patched_paper(lambda raw: raw["profiles"]["smoke"].update(method_scenarios=value))
    with pytest.raises(ConfigError, match=expect):
        load_paper(PAPER, "smoke")


def test_method_scenarios_cannot_ask_for_a_kind_the_method_does_not_support(patched_paper):
    patched_paper(lambda raw: raw["profiles"]["smoke"].update(
        method_scenarios={"deep_unlearning": ["random"]},
        split={"forget": [[0]], "scenarios": [{"kind": "random", "fraction": 0.1}]}))
    with pytest.raises(ConfigError, match=r"method_scenarios\.deep_unlearning: deep_unlearning does not support "
                                          r"random scenarios; it supports class"):
        load_paper(PAPER, "smoke")


def test_method_scenarios_cannot_differ_between_datasets(patched_paper):
    patched_paper(lambda raw: raw["profiles"]["smoke"].update(
        more_datasets={"digits": {"method_scenarios": {"neggrad": ["class"]}}}))
    with pytest.raises(ConfigError, match=r"more_datasets\.digits: method_scenarios cannot differ between datasets"):
        load_paper(PAPER, "smoke")


def test_a_yaml_cannot_set_the_metrics_seed(patched_paper):
    """The harness seeds each cell's metrics with its training seed (harness/cells.py); a YAML value would be
    overwritten without a word, so it is refused (issue 23, part 4)."""
    patched_paper(lambda raw: raw["profiles"]["smoke"].setdefault("metrics", {}).update(seed=7))
    with pytest.raises(ConfigError, match=r"metrics\.seed: 7; the harness seeds the metrics with each cell's"):
        load_paper(PAPER, "smoke")
