"""Labels: the ignore value, class names, colour palettes and colour-coding of label maps.

A leaf module (torch only): data, training, attacks and report all import it, it imports none
of them.
"""

import torch

# Void / unlabelled pixels: skipped by every loss and metric (docs/design.md, "Data").
IGNORE_INDEX = 255

CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol",
                  "fence", "car", "pedestrian", "bicyclist")
# The SegNet tutorial's CamVid colours, one RGB triple per class.
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
                  (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
                  (0, 128, 192))

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light",
                      "traffic_sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                      "truck", "bus", "train", "motorcycle", "bicycle")
CITYSCAPES_PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
                      (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),
                      (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
                      (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230),
                      (119, 11, 32))
# Official labelId -> trainId (cityscapesScripts' labels.py); every other id is ignored.
CITYSCAPES_ID_TO_TRAINID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                            23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_NUM_LABEL_IDS = 34  # labelIds 0..33; anything else in a label PNG is an error

SYNTHETIC_CLASSES = ("sky", "building", "road", "tree", "car")
SYNTHETIC_PALETTE = ((70, 130, 180), (128, 0, 0), (128, 64, 128), (107, 142, 35), (0, 0, 142))


def colorize(label: torch.Tensor, palette) -> torch.Tensor:
    """(H, W) class ids -> (H, W, 3) float RGB in [0, 1]; ignored/unknown ids are black."""
    lut = torch.zeros(256, 3)
    lut[: len(palette)] = torch.tensor(palette, dtype=torch.float32) / 255
    return lut[label.long().clamp(0, 255)]
