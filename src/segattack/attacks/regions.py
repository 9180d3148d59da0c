"""``build_region``: a region (``segattack/regions.py``) from its config, checked by the schema."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import OmegaConf

from ..errors import ConfigError
from ..regions import REGIONS, Region
from ..schema import check_region


def build_region(cfg, image_size: Sequence[int], num_classes: int, seed: int = 0,
                 key: str = "region") -> Region:
    """A region from its config dict (``type``: a name in ``REGIONS``); errors name ``key``.

    Its keys are checked by the schema (``segattack.schema``); what needs the image size or the
    number of classes is checked by the region's class."""
    keys = check_region(OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg), key)
    try:
        return REGIONS[keys.type].from_keys(keys, image_size, num_classes, seed)
    except ConfigError as err:
        raise ConfigError(str(err).replace("region.", f"{key}.", 1)) from None
