"""Train baseline segmentation models (ENet and ERFNet by default) as Lightning runs.

    python train_models.py                      # enet then erfnet on CamVid
    python train_models.py models=[enet] data=synthetic trainer.max_epochs=5
"""

from pathlib import Path

import hydra

from segattack.config import register_resolvers

register_resolvers(Path(__file__).resolve().parent)


@hydra.main(version_base="1.3", config_path="configs", config_name="train_models")
def main(cfg):
    from segattack.cli import run_task
    from segattack.training.task import train

    for r in run_task(train, cfg):
        print(f"{r['model']}: best val mIoU {r['best_val_miou']}, weights: {r['weights']}")


if __name__ == "__main__":
    from segattack.cli import run_app

    run_app(main)
