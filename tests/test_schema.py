"""The config schemas in-process: every bad value is refused with one line that names the key,
the value given and what is expected, before anything loads (``segattack.schema``)."""

from __future__ import annotations

import pytest
from helpers import compose

from segattack.errors import ConfigError
from segattack.losses import LOSSES
from segattack.schema import check_attack_config, check_train_config

ATTACK_METHODS = "['apgd', 'clip', 'ensemble', 'fgsm', 'ifgsm', 'padam', 'pgd', 'sigmoid', 'tanh']"
EPS = "(pixel units of [0, 1] images, e.g. 8/255)"

# kind -> [(overrides, the exact error line)]; configs/attack.yaml
ATTACK_CASES = {
    "type": [
        (["eps=null"], f"eps=null: expected a number in (0, 1] {EPS}"),
        (["eps=true"], f"eps=true: expected a number in (0, 1] {EPS}"),
        (["eps=[1,2]"], f"eps=[1,2]: expected a number in (0, 1] {EPS}"),
        (["eps=abc"], f"eps='abc': expected a number in (0, 1] {EPS}"),
        (["robustness.eps=[abc]"], f"robustness.eps=['abc']: item 0: expected a number in (0, 1] {EPS}"),
        (["attack=ensemble", "attack.skip_fooled=maybe"], "attack.skip_fooled='maybe': expected true or false"),
        (["region.size=[1]"], "region.size=[1]: expected 2 values, e.g. [120,160] (h, w in pixels)"),
        (["region.size=big"], "region.size='big': expected a list in brackets, e.g. [a,b]"),
        (["region.size=[90,abc]"], "region.size=[90,'abc']: item 1: expected an integer"),
        (["attack.lambdas={enet:x}"], "attack.lambdas.enet='x': expected a number"),
        (["attack.target_class=abc"], "attack.target_class='abc': expected an integer"),
        (["attack.ce_max=abc"], "attack.ce_max='abc': expected a number"),
        (["attack.keep_weight=abc"], "attack.keep_weight='abc': expected a number"),
        (["attack.steps=2.5"], "attack.steps=2.5: expected an integer"),
        (["attack.best=maybe"], "attack.best='maybe': expected true or false"),
        (["area=full"], "area='full': expected a mapping with the keys of a region, e.g. "
                        "area={type:box,size:[60,80]} or area={type:full}"),
        (["area={type:box}"], "area.size is required"),
    ],
    "range": [
        (["eps=2"], f"eps=2: expected 0 < eps <= 1 {EPS}"),
        (["attack.steps=0"], "attack.steps=0: expected > 0"),
        (["data.batch_size=0"], "data.batch_size=0: expected > 0"),
        (["data.batch_size=-4"], "data.batch_size=-4: expected > 0"),
        (["data.num_workers=-1"], "data.num_workers=-1: expected >= 0"),
        (["data.limit=0"], "data.limit=0: expected > 0"),
        (["data.limit=-1"], "data.limit=-1: expected > 0"),
        (["torch_threads=-1"], "torch_threads=-1: expected > 0"),
        (["checkpoint_every=-1"], "checkpoint_every=-1: expected > 0"),
        (["num_figures=-1"], "num_figures=-1: expected >= 0"),
        (["attack.ce_max=0"], "attack.ce_max=0: expected > 0"),
        (["attack=fgsm", "attack.steps=3"], "attack.steps=3: fgsm takes at most 1 step(s)"),
    ],
    "choice": [
        (["task=atack"], "task='atack': expected one of ['attack', 'transfer', 'robustness']"),
        (["mode=uni"], "mode='uni': expected one of ['per_image', 'universal']"),
        (["attack.loss=hinge"], f"attack.loss='hinge': expected one of {[*LOSSES.choices(), 'auto']}"),
        (["attack.schedule=linear"], "attack.schedule='linear': expected one of ['constant', 'cosine', 'step']"),
        (["attack.balance=mean"], "attack.balance='mean': expected one of ['sum', 'normalized']"),
        (["attack.method=nope"], f"attack.method='nope': expected one of {ATTACK_METHODS}"),
        (["region.position=left"], "region.position='left': expected one of ['center', 'fixed', 'random']"),
        (["+area={type:ring}"], "area.type='ring': expected one of ['full', 'box', 'class']"),
        (["eval_split=tset"], "eval_split='tset': expected one of ['train', 'val', 'test']"),
        (["channels_last=yes"], "channels_last='yes': expected auto, true or false"),
        (["trainer.accelerator=gpuu"],
         "trainer.accelerator='gpuu': expected one of ['cpu', 'gpu', 'cuda', 'mps', 'tpu', 'auto']"),
        (["source_models=enet"], "source_models='enet': expected a list in brackets, e.g. [a,b]"),
        (["+trainer.max_epoch=3"], "trainer.max_epoch=3: not an argument of lightning.Trainer"),
        (["+stpes=3"], "stpes=3: not a known key (remove it, or declare it in segattack/schema)"),
        (["attack=ensemble", "attack.members=[{attack:nope}]"],
         "attack.members: attack='nope': expected one of "
         "['apgd', 'clip', 'fgsm', 'ifgsm', 'padam', 'pgd', 'sigmoid', 'tanh']"),
    ],
    "nonsense": [
        (["source_models=[enet,enet]"], "source_models=['enet','enet']: 'enet' is listed twice"),
        (["eval_models=[erfnet,erfnet]"], "eval_models=['erfnet','erfnet']: 'erfnet' is listed twice"),
        (["source_models=[]"], "source_models=[]: expected at least 1 value"),
        (["attack.lambdas={enet:-1}"], "attack.lambdas.enet=-1: expected >= 0"),
        (["attack.lambdas={enet:0,erfnet:0}"], "attack.lambdas={enet:0.0,erfnet:0.0}: every weight is 0, "
                                               "so the attack optimises nothing; expected at least one > 0"),
        (["attack.lambdas={enett:1}"],
         "attack.lambdas={enett:1.0}: 'enett' is not in source_models ['enet','erfnet']"),
        (["region=class", "region.classes=[]"], "region.classes=[]: expected at least 1 value"),
        (["region=class", "region.classes=[9,9]"], "region.classes=[9,9]: a class is listed twice"),
        (["region.position=fixed"],
         "region.origin=null: position=fixed needs origin=[y,x] (the top-left corner)"),
        (["attack.targeted=true"], "attack.targeted=true needs exactly one of attack.target_class "
                                   "(e.g. 3) or attack.target_map (e.g. {9: 3})"),
        (["task=transfer", "source_models=[enet]"],
         "source_models=['enet']: task=transfer needs at least two, e.g. source_models=[enet,erfnet]"),
        (["attack=ensemble", "mode=universal"],
         "mode='universal': attack=ensemble runs per image: set mode=per_image"),
        (["task=robustness", "mode=universal"],
         "mode='universal': task=robustness attacks each image: set mode=per_image"),
        (["task=robustness", "attack.targeted=true", "attack.target_class=1"],
         "attack.targeted=true: task=robustness measures untargeted robustness: set attack.targeted=false"),
        (["robustness.eps=[4/255,4/255]"], "robustness.eps=[4/255,4/255]: a value is listed twice "
                                           "(expected distinct eps, e.g. [2/255,4/255,8/255])"),
        (["robustness.eps=[]"], "robustness.eps=[]: expected at least 1 value"),
        (["save_adversarial=some"], "save_adversarial='some': expected one of ['none', 'all']"),
        (["data=camvid", "data.scale=[2.0,1.0]"], "data.scale=[2.0,1.0]: expected [low,high] with low <= high"),
    ],
}

TRAIN_CASES = {
    "type": [
        (["mean=[0.5,0.5]"], "mean=[0.5,0.5]: expected 3 values, e.g. [0.485,0.456,0.406] "
                             "(one value per RGB channel)"),
        (["models=enet"], "models='enet': expected a list in brackets, e.g. [a,b]"),
        (["seed=abc"], "seed='abc': expected an integer"),
    ],
    "range": [
        (["std=[0.2,0,0.2]"], "std=[0.2,0,0.2]: item 1: expected > 0"),
        (["trainer.max_epochs=-2"], "trainer.max_epochs=-2: expected >= -1"),
        (["data.batch_size=0"], "data.batch_size=0: expected > 0"),
    ],
    "choice": [
        (["class_weighting=inverse"], "class_weighting='inverse': expected one of ['enet', 'median', 'none']"),
        (["schedule=step"], "schedule='step': expected one of ['poly', 'cosine']"),
        (["trainer.precision=17"], "trainer.precision=17: expected one of ['32-true', '32', 32, '16-mixed', "
                                   "'16', 16, 'bf16-mixed', 'bf16', 'bf16-true', '16-true', '64-true', "
                                   "'64', 64, 'transformer-engine', 'transformer-engine-float16']"),
        (["models=[nope]"], "models=['nope']: unknown model 'nope'; expected one of ['enet', 'enet_robust', 'erfnet', 'erfnet_robust']"),
    ],
    "nonsense": [
        (["models=[enet,enet]"], "models=['enet','enet']: 'enet' is listed twice"),
        (["models=[]"], "models=[]: expected at least 1 value"),
    ],
}


def _cases(table):
    return [pytest.param(kind, o, line, id=f"{kind}:{' '.join(o)}") for kind, rows in table.items()
            for o, line in rows]


def _refused(check, config_name, overrides, tmp_path) -> str:
    cfg = compose(config_name, tmp_path, overrides)
    with pytest.raises(ConfigError) as err:
        check(cfg)
    return str(err.value)


@pytest.mark.parametrize("kind, overrides, line", _cases(ATTACK_CASES))
def test_attack_schema_refuses(kind, overrides, line, tmp_path):
    assert _refused(check_attack_config, "attack", overrides, tmp_path) == line
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("kind, overrides, line", _cases(TRAIN_CASES))
def test_train_schema_refuses(kind, overrides, line, tmp_path):
    assert _refused(check_train_config, "train_models", overrides, tmp_path) == line


def test_unknown_model_is_refused_when_the_run_needs_its_weights(tmp_path):
    cfg = compose("attack", tmp_path, ["source_models=[nope]"])
    check_attack_config(cfg)  # in-process callers may bring their own models
    with pytest.raises(ConfigError) as err:
        check_attack_config(cfg, models_known=True)
    assert str(err.value) == ("source_models=['nope']: unknown model 'nope'; expected one of "
                              "['enet', 'enet_robust', 'erfnet', 'erfnet_robust'] or give weights.nope=PATH or own_models.nope")


def test_several_bad_keys_one_line_each(tmp_path):
    message = _refused(check_attack_config, "attack", ["eps=null", "mode=uni", "data.batch_size=0"], tmp_path)
    assert sorted(message.splitlines()) == sorted([
        f"eps=null: expected a number in (0, 1] {EPS}", "mode='uni': expected one of ['per_image', 'universal']",
        "data.batch_size=0: expected > 0"])


@pytest.mark.parametrize("overrides", [
    [], ["attack=pgd"], ["attack=ifgsm"], ["attack=fgsm"], ["attack=apgd"], ["attack=ensemble"],
    ["mode=universal", "region=full"], ["region=class", "area={type:full}"], ["logger=csv"],
    ["logger=none"], ["data=synthetic"], ["data=camvid"], ["data=cityscapes"], ["trainer=ddp"],
    ["trainer=gpu"], ["attack.targeted=true", "attack.target_map={9:3}"], ["eps=0.03"],
    ["experiment=paper_local"], ["experiment=paper_universal"], ["experiment=hide_pedestrians"],
    ["experiment=paper_plain"], ["experiment=paper_baselines"], ["experiment=paper_transfer"],
])
def test_shipped_attack_configs_pass(overrides, tmp_path):
    check_attack_config(compose("attack", tmp_path, overrides), models_known=True)


@pytest.mark.parametrize("overrides", [[], ["data=synthetic"], ["data=sample"], ["trainer=ddp"],
                                       ["train_experiment=camvid_baseline"], ["logger=csv"]])
def test_shipped_train_configs_pass(overrides, tmp_path):
    check_train_config(compose("train_models", tmp_path, overrides))
