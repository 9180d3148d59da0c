"""Run an attack as a Lightning run; with no arguments, the shipped demo.

    python attack.py                                   # joint tanh attack, ENet + ERFNet, CamVid sample
    python attack.py attack=pgd mode=universal region=full eps=8/255 data=camvid
    python attack.py task=transfer                     # source x target asr matrix
    python attack.py experiment=robustness             # worst case over many attacks, several eps
"""

from pathlib import Path

import hydra

from segattack.config import register_resolvers

register_resolvers(Path(__file__).resolve().parent)


@hydra.main(version_base="1.3", config_path="configs", config_name="attack")
def main(cfg):
    from lightning.pytorch.utilities import rank_zero_only

    from segattack.console import quiet_console

    quiet_console(cfg.verbose)
    from segattack.attacks.robustness import run_robustness
    from segattack.attacks.task import run_attack, run_transfer
    from segattack.cli import run_task
    from segattack.report import summary_table

    out = Path(cfg.paths.output_dir)
    if cfg.task == "transfer":
        result = run_task(run_transfer, cfg)
        print("transfer asr (rows: crafted on, cols: evaluated on)", result["cols"])
        for row, values in zip(result["rows"], result["asr"]):
            print(f"  {row:>16}: " + "  ".join(f"{v:6.1%}" for v in values))
        print(f"transfer matrix: {out / 'transfer.json'}  heatmap: {out / 'transfer.png'}")
    elif cfg.task == "robustness":
        from segattack.report.robustness import table

        print(table(run_task(run_robustness, cfg)))
        print(f"protocol: {out / 'robustness.md'}  plot: {out / 'robustness.png'}")
    else:
        metrics = run_task(run_attack, cfg)
        if rank_zero_only.rank == 0:  # DDP: one summary, from the process that wrote the outputs
            print(summary_table(metrics))
            print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    from segattack.cli import run_app

    run_app(main)
