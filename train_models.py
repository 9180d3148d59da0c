"""Train baseline segmentation models (ENet and ERFNet by default) as Lightning runs.

    python train_models.py                      # enet then erfnet on CamVid
    python train_models.py models=[enet] data=synthetic trainer.max_epochs=5
    python train_models.py task=evaluate eval_split=test   # the shipped weights on CamVid test
"""

from pathlib import Path

import hydra

from segattack.config import register_resolvers

register_resolvers(Path(__file__).resolve().parent)


@hydra.main(version_base="1.3", config_path="configs", config_name="train_models")
def main(cfg):
    from segattack.cli import run_task
    from segattack.training.evaluate import format_report, run

    out = run_task(run, cfg)
    for r in out["train"] or []:
        exported = (f" (export {r['export']}: epoch {r['exported_epoch']}, val mIoU {r['exported_val_miou']})"
                    if r["weights"] else "")
        print(f"{r['model']}: best val mIoU {r['best_val_miou']}, weights: {r['weights']}{exported}")
    if out["eval"]:
        print(format_report(out["eval"]))


if __name__ == "__main__":
    main()
