"""Every number of the paper a report prints beside ours, transcribed from "Bayes Conditional
Distribution Estimation for Knowledge Distillation" (MCMI, ICLR 2024), each with its table.

Keys are mcmi registry names: architectures, methods, pairs ``"<teacher>-<student>"``, teacher
kinds ``mll`` / ``mcmi``. Table 1 was checked: every MCMI value equals the MLL value plus the
printed gain (:data:`PAPER_GAINS`), and the means of Tables 10-11 equal Table 1's MCMI column
(tests/test_table1.py re-checks both). Accuracies are top-1 on the test set, in %.
"""
from __future__ import annotations

from typing import Any

# ---------------------------------------------------------------------- Table 1 (Tables 10-11)
#: Table 1, teacher rows: (test accuracy %, LL on the training set, CMI on the training set).
PAPER_TEACHERS: dict[str, dict[str, tuple[float, float, float]]] = {
    "resnet56": {"mll": (72.34, -0.101, 0.1583), "mcmi": (72.09, -0.344, 0.4428)},
    "resnet110": {"mll": (74.31, -0.033, 0.0605), "mcmi": (73.60, -0.246, 0.3474)},
    "wrn_40_2": {"mll": (75.61, -0.052, 0.0255), "mcmi": (75.21, -0.132, 0.1951)},
    "vgg13": {"mll": (74.64, -0.007, 0.0152), "mcmi": (73.96, -0.076, 0.1298)},
    "resnet50": {"mll": (79.34, -0.004, 0.0085), "mcmi": (78.45, -0.083, 0.1065)},
    "resnet32x4": {"mll": (79.41, -0.004, 0.0059), "mcmi": (78.70, -0.035, 0.0586)},
}
#: Table 1, student rows: the student trained alone (test accuracy %).
PAPER_STUDENT_BASELINE: dict[str, float] = {
    "resnet20": 69.06,
    "resnet32": 71.14,
    "wrn_16_2": 73.26,
    "wrn_40_1": 71.98,
    "vgg8": 70.36,
    "mobilenetv2": 64.60,
    "shufflenetv1": 70.50,
    "shufflenetv2": 71.82,
}
#: Table 1: student test accuracy (%), mean of 5 runs, as (MLL teacher, MCMI teacher).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "resnet56-resnet20": {
        "kd": (70.66, 70.84), "at": (70.55, 70.89), "pkt": (70.34, 70.96), "sp": (69.67, 70.98),
        "cc": (69.63, 69.98), "rkd": (69.61, 70.68), "vid": (70.38, 70.64), "crd": (71.16, 71.40),
        "dkd": (71.97, 72.31), "reviewkd": (71.89, 72.31), "hsakd": (72.58, 72.70),
    },
    "resnet110-resnet20": {
        "kd": (70.67, 70.85), "at": (70.22, 70.68), "pkt": (70.25, 71.03), "sp": (70.04, 70.83),
        "cc": (69.48, 70.02), "rkd": (69.25, 70.24), "vid": (70.16, 70.69), "crd": (71.46, 71.93),
        "dkd": (71.51, 71.83), "reviewkd": (71.65, 72.11), "hsakd": (72.64, 73.15),
    },
    "resnet110-resnet32": {
        "kd": (73.08, 73.48), "at": (72.31, 73.96), "pkt": (72.61, 72.92), "sp": (72.69, 73.34),
        "cc": (71.48, 71.71), "rkd": (71.82, 72.65), "vid": (72.61, 73.10), "crd": (73.48, 74.03),
        "dkd": (74.11, 74.36), "reviewkd": (73.89, 74.01), "hsakd": (74.97, 75.71),
    },
    "wrn_40_2-wrn_16_2": {
        "kd": (74.92, 75.42), "at": (74.08, 74.49), "pkt": (74.54, 75.01), "sp": (73.83, 74.60),
        "cc": (73.56, 74.00), "rkd": (73.35, 73.97), "vid": (74.11, 74.44), "crd": (75.48, 75.82),
        "dkd": (76.24, 76.66), "reviewkd": (76.12, 76.29), "hsakd": (77.20, 77.36),
    },
    "wrn_40_2-wrn_40_1": {
        "kd": (73.54, 74.53), "at": (72.77, 73.25), "pkt": (73.45, 74.15), "sp": (72.43, 73.60),
        "cc": (72.21, 72.50), "rkd": (72.22, 72.66), "vid": (73.30, 73.58), "crd": (74.14, 74.86),
        "dkd": (74.81, 75.63), "reviewkd": (75.09, 75.47), "hsakd": (77.00, 77.55),
    },
    "vgg13-vgg8": {
        "kd": (72.98, 73.83), "at": (71.43, 71.76), "pkt": (72.88, 73.35), "sp": (72.68, 73.29),
        "cc": (70.71, 71.02), "rkd": (71.48, 72.03), "vid": (71.23, 71.93), "crd": (73.94, 74.23),
        "dkd": (74.68, 74.87), "reviewkd": (74.84, 74.96), "hsakd": (75.42, 75.86),
    },
    "resnet50-mobilenetv2": {
        "kd": (67.35, 70.23), "at": (58.58, 60.03), "pkt": (66.52, 67.42), "sp": (68.08, 69.07),
        "cc": (65.43, 66.76), "rkd": (64.43, 65.11), "vid": (67.57, 67.61), "crd": (69.11, 69.70),
        "dkd": (70.35, 71.70), "reviewkd": (69.89, 70.63), "hsakd": (71.83, 72.98),
    },
    "resnet50-vgg8": {
        "kd": (73.81, 74.59), "at": (71.84, 72.19), "pkt": (73.10, 73.43), "sp": (73.34, 74.14),
        "cc": (70.25, 70.90), "rkd": (71.50, 72.10), "vid": (70.30, 70.69), "crd": (74.30, 74.86),
        "dkd": (73.94, 75.35), "reviewkd": (73.43, 74.20), "hsakd": (75.87, 76.45),
    },
    "resnet32x4-shufflenetv1": {
        "kd": (74.07, 75.90), "at": (71.73, 75.05), "pkt": (74.10, 75.21), "sp": (73.48, 76.56),
        "cc": (71.14, 71.77), "rkd": (72.28, 73.59), "vid": (73.38, 74.58), "crd": (75.11, 76.82),
        "dkd": (76.45, 77.21), "reviewkd": (77.45, 77.78), "hsakd": (79.51, 79.77),
    },
    "resnet32x4-shufflenetv2": {
        "kd": (74.45, 76.32), "at": (72.73, 75.21), "pkt": (74.69, 76.34), "sp": (74.56, 76.70),
        "cc": (71.29, 73.02), "rkd": (73.21, 74.67), "vid": (73.40, 74.67), "crd": (75.65, 77.54),
        "dkd": (77.07, 77.66), "reviewkd": (77.78, 78.23), "hsakd": (79.93, 80.01),
    },
    "wrn_40_2-shufflenetv1": {
        "kd": (74.83, 76.45), "at": (73.32, 75.61), "pkt": (73.89, 75.39), "sp": (74.52, 76.82),
        "cc": (71.38, 71.80), "rkd": (72.21, 74.26), "vid": (73.61, 75.03), "crd": (76.05, 76.62),
        "dkd": (76.70, 77.42), "reviewkd": (77.14, 77.56), "hsakd": (78.51, 78.87),
    },
    "vgg13-mobilenetv2": {
        "kd": (67.37, 69.14), "at": (59.40, 62.07), "pkt": (67.13, 68.37), "sp": (66.30, 67.83),
        "cc": (64.86, 65.45), "rkd": (64.52, 65.37), "vid": (65.56, 65.77), "crd": (69.70, 69.98),
        "dkd": (69.71, 70.35), "reviewkd": (70.37, 71.70), "hsakd": (71.09, 72.80),
    },
}
#: Table 1's printed subscripts: MCMI - MLL (kept to check the transcription).
PAPER_GAINS: dict[str, dict[str, float]] = {
    "resnet56-resnet20": {
        "kd": 0.18, "at": 0.34, "pkt": 0.62, "sp": 1.31, "cc": 0.35, "rkd": 1.07,
        "vid": 0.26, "crd": 0.24, "dkd": 0.34, "reviewkd": 0.42, "hsakd": 0.12,
    },
    "resnet110-resnet20": {
        "kd": 0.18, "at": 0.46, "pkt": 0.78, "sp": 0.79, "cc": 0.54, "rkd": 0.99,
        "vid": 0.53, "crd": 0.47, "dkd": 0.32, "reviewkd": 0.46, "hsakd": 0.51,
    },
    "resnet110-resnet32": {
        "kd": 0.40, "at": 1.65, "pkt": 0.31, "sp": 0.65, "cc": 0.23, "rkd": 0.83,
        "vid": 0.49, "crd": 0.55, "dkd": 0.25, "reviewkd": 0.12, "hsakd": 0.74,
    },
    "wrn_40_2-wrn_16_2": {
        "kd": 0.50, "at": 0.41, "pkt": 0.47, "sp": 0.77, "cc": 0.44, "rkd": 0.62,
        "vid": 0.33, "crd": 0.34, "dkd": 0.42, "reviewkd": 0.17, "hsakd": 0.16,
    },
    "wrn_40_2-wrn_40_1": {
        "kd": 0.99, "at": 0.48, "pkt": 0.70, "sp": 1.17, "cc": 0.29, "rkd": 0.44,
        "vid": 0.28, "crd": 0.72, "dkd": 0.82, "reviewkd": 0.38, "hsakd": 0.55,
    },
    "vgg13-vgg8": {
        "kd": 0.85, "at": 0.33, "pkt": 0.47, "sp": 0.61, "cc": 0.31, "rkd": 0.55,
        "vid": 0.70, "crd": 0.29, "dkd": 0.19, "reviewkd": 0.12, "hsakd": 0.44,
    },
    "resnet50-mobilenetv2": {
        "kd": 2.88, "at": 1.45, "pkt": 0.90, "sp": 0.99, "cc": 1.33, "rkd": 0.68,
        "vid": 0.04, "crd": 0.59, "dkd": 1.35, "reviewkd": 0.74, "hsakd": 1.15,
    },
    "resnet50-vgg8": {
        "kd": 0.78, "at": 0.35, "pkt": 0.33, "sp": 0.80, "cc": 0.65, "rkd": 0.60,
        "vid": 0.39, "crd": 0.56, "dkd": 1.41, "reviewkd": 0.77, "hsakd": 0.58,
    },
    "resnet32x4-shufflenetv1": {
        "kd": 1.83, "at": 3.32, "pkt": 1.11, "sp": 3.08, "cc": 0.63, "rkd": 1.31,
        "vid": 1.20, "crd": 1.71, "dkd": 0.76, "reviewkd": 0.33, "hsakd": 0.26,
    },
    "resnet32x4-shufflenetv2": {
        "kd": 1.87, "at": 2.48, "pkt": 1.65, "sp": 2.14, "cc": 1.73, "rkd": 1.46,
        "vid": 1.27, "crd": 1.89, "dkd": 0.59, "reviewkd": 0.45, "hsakd": 0.08,
    },
    "wrn_40_2-shufflenetv1": {
        "kd": 1.62, "at": 2.29, "pkt": 1.50, "sp": 2.30, "cc": 0.42, "rkd": 2.05,
        "vid": 1.42, "crd": 0.57, "dkd": 0.72, "reviewkd": 0.42, "hsakd": 0.36,
    },
    "vgg13-mobilenetv2": {
        "kd": 1.77, "at": 2.67, "pkt": 1.24, "sp": 1.53, "cc": 0.59, "rkd": 0.85,
        "vid": 0.21, "crd": 0.28, "dkd": 0.64, "reviewkd": 1.33, "hsakd": 1.71,
    },
}
#: Tables 10 (same architectures) and 11 (different): MCMI-teacher student accuracy as
#: (mean, spread); the paper calls the spread a variance, it prints mean ± spread.
PAPER_MCMI_MEAN_STD: dict[str, dict[str, tuple[float, float]]] = {
    "resnet56-resnet20": {
        "kd": (70.84, 0.10), "at": (70.89, 0.28), "pkt": (70.96, 0.38), "sp": (70.98, 0.07),
        "cc": (69.98, 0.47), "rkd": (70.68, 0.13), "vid": (70.64, 0.25), "crd": (71.40, 0.13),
        "dkd": (72.31, 0.12), "reviewkd": (72.31, 0.26), "hsakd": (72.70, 0.28),
    },
    "resnet110-resnet20": {
        "kd": (70.85, 0.20), "at": (70.68, 0.32), "pkt": (71.03, 0.12), "sp": (70.83, 0.26),
        "cc": (70.02, 0.18), "rkd": (70.24, 0.17), "vid": (70.69, 0.09), "crd": (71.93, 0.17),
        "dkd": (71.83, 0.18), "reviewkd": (72.11, 0.30), "hsakd": (73.15, 0.16),
    },
    "resnet110-resnet32": {
        "kd": (73.48, 0.13), "at": (73.96, 0.18), "pkt": (72.92, 0.14), "sp": (73.34, 0.18),
        "cc": (71.71, 0.23), "rkd": (72.65, 0.24), "vid": (73.10, 0.13), "crd": (74.03, 0.08),
        "dkd": (74.36, 0.14), "reviewkd": (74.01, 0.43), "hsakd": (75.71, 0.13),
    },
    "wrn_40_2-wrn_16_2": {
        "kd": (75.42, 0.12), "at": (74.49, 0.15), "pkt": (75.01, 0.15), "sp": (74.60, 0.27),
        "cc": (74.00, 0.24), "rkd": (73.97, 0.15), "vid": (74.44, 0.25), "crd": (75.82, 0.15),
        "dkd": (76.66, 0.22), "reviewkd": (76.29, 0.16), "hsakd": (77.36, 0.17),
    },
    "wrn_40_2-wrn_40_1": {
        "kd": (74.53, 0.34), "at": (73.25, 0.28), "pkt": (74.15, 0.28), "sp": (73.60, 0.16),
        "cc": (72.50, 0.16), "rkd": (72.66, 0.21), "vid": (73.58, 0.28), "crd": (74.86, 0.11),
        "dkd": (75.63, 0.09), "reviewkd": (75.47, 0.14), "hsakd": (77.55, 0.22),
    },
    "vgg13-vgg8": {
        "kd": (73.83, 0.22), "at": (71.76, 0.16), "pkt": (73.35, 0.20), "sp": (73.29, 0.14),
        "cc": (71.02, 0.29), "rkd": (72.03, 0.28), "vid": (71.93, 0.10), "crd": (74.23, 0.05),
        "dkd": (74.87, 0.11), "reviewkd": (74.96, 0.18), "hsakd": (75.86, 0.20),
    },
    "resnet50-mobilenetv2": {
        "kd": (70.23, 0.34), "at": (60.03, 0.21), "pkt": (67.42, 0.18), "sp": (69.07, 0.17),
        "cc": (66.76, 0.42), "rkd": (65.11, 0.49), "vid": (67.61, 0.19), "crd": (69.70, 0.69),
        "dkd": (71.70, 0.35), "reviewkd": (70.63, 0.26), "hsakd": (72.98, 0.26),
    },
    "resnet50-vgg8": {
        "kd": (74.59, 0.16), "at": (72.19, 0.94), "pkt": (73.43, 0.17), "sp": (74.14, 0.19),
        "cc": (70.90, 0.20), "rkd": (72.10, 0.27), "vid": (70.69, 0.17), "crd": (74.86, 0.17),
        "dkd": (75.35, 0.13), "reviewkd": (74.20, 0.85), "hsakd": (76.45, 0.19),
    },
    "resnet32x4-shufflenetv1": {
        "kd": (75.90, 0.11), "at": (75.05, 0.17), "pkt": (75.21, 0.27), "sp": (76.56, 0.29),
        "cc": (71.77, 0.17), "rkd": (73.59, 0.18), "vid": (74.58, 0.23), "crd": (76.82, 0.22),
        "dkd": (77.21, 0.14), "reviewkd": (77.78, 0.31), "hsakd": (79.77, 0.09),
    },
    "resnet32x4-shufflenetv2": {
        "kd": (76.32, 0.47), "at": (75.21, 0.13), "pkt": (76.34, 0.18), "sp": (76.70, 0.18),
        "cc": (73.02, 0.17), "rkd": (74.67, 0.29), "vid": (74.67, 0.25), "crd": (77.54, 0.10),
        "dkd": (77.66, 0.19), "reviewkd": (78.23, 0.14), "hsakd": (80.01, 0.16),
    },
    "wrn_40_2-shufflenetv1": {
        "kd": (76.45, 0.27), "at": (75.61, 0.25), "pkt": (75.39, 0.14), "sp": (76.82, 0.14),
        "cc": (71.80, 0.19), "rkd": (74.26, 0.31), "vid": (75.03, 0.17), "crd": (76.62, 0.27),
        "dkd": (77.42, 0.45), "reviewkd": (77.56, 0.32), "hsakd": (78.87, 0.42),
    },
    "vgg13-mobilenetv2": {
        "kd": (69.14, 0.22), "at": (62.07, 0.26), "pkt": (68.37, 0.35), "sp": (67.83, 0.28),
        "cc": (65.45, 0.39), "rkd": (65.37, 0.10), "vid": (65.77, 0.36), "crd": (69.98, 0.13),
        "dkd": (70.35, 0.08), "reviewkd": (71.70, 0.46), "hsakd": (72.80, 0.11),
    },
}
#: Table 1's asterisks: (pair, method) whose MLL value the paper reproduced locally.
PAPER_REPRODUCED: frozenset[tuple[str, str]] = frozenset({
    ("resnet110-resnet20", "dkd"),
    ("resnet110-resnet20", "reviewkd"),
    ("resnet110-resnet20", "hsakd"),
    ("resnet110-resnet32", "hsakd"),
    ("vgg13-vgg8", "hsakd"),
    ("resnet50-vgg8", "dkd"),
    ("resnet50-vgg8", "reviewkd"),
    ("resnet50-mobilenetv2", "hsakd"),
    ("resnet50-vgg8", "hsakd"),
    ("resnet32x4-shufflenetv1", "hsakd"),
    ("vgg13-mobilenetv2", "hsakd"),
})

# ------------------------------------------------------------------ Table 6 (MCMI's lambda)
#: Table 6 (A.8.1): lambda* of the MCMI fine-tune per teacher, CIFAR-100. (The grid's own copy
#: decides the runs; reports use these keys to list a grid's lambdas as the grid config had them.)
PAPER_TABLE6_LAMBDA: dict[str, float] = {
    "resnet56": 0.15, "resnet110": 0.10, "wrn_40_2": 0.15, "vgg13": 0.20, "resnet50": 0.20, "resnet32x4": 0.15,
}
#: Table 6, CIFAR-10 row (only ResNet-56 is listed).
PAPER_TABLE6_LAMBDA_CIFAR10: dict[str, float] = {"resnet56": 0.25}

# ------------------------------------------------------------------------ Table 3 (few-shot)
#: Tables 3 and 12 (CIFAR-100, ResNet-56 -> ResNet-20): method -> alpha (fraction of the training
#: set the student sees) -> (MLL teacher, MCMI teacher) student top-1 %.
PAPER_TABLE3: dict[str, dict[float, tuple[float, float]]] = {
    "kd": {0.05: (52.30, 58.02), 0.10: (60.13, 63.75), 0.15: (63.52, 66.20), 0.25: (66.78, 68.10),
           0.35: (68.28, 69.34), 0.50: (69.52, 70.28), 0.75: (70.44, 70.59)},
    "crd": {0.05: (47.60, 51.40), 0.10: (54.60, 56.80), 0.15: (58.90, 60.02), 0.25: (63.82, 64.70),
            0.35: (66.70, 67.22), 0.50: (68.84, 69.15), 0.75: (70.35, 70.40)},
}

# ----------------------------------------------------------------------- Table 9 (zero-shot)
#: Table 9 (CIFAR-100, WRN-40-2 -> WRN-16-2, KD, 5 seeds): teacher kind -> number of dropped
#: classes -> (student accuracy % on the dropped classes, on the kept classes).
PAPER_TABLE9: dict[str, dict[int, tuple[float, float]]] = {
    "mll": {5: (0.16, 75.02), 10: (2.70, 75.82), 20: (1.63, 76.28), 30: (1.11, 80.15), 40: (1.74, 80.42),
            50: (0.87, 82.38)},
    "mcmi": {5: (25.64, 75.08), 10: (32.78, 75.78), 20: (30.61, 76.22), 30: (21.72, 80.27), 40: (23.74, 80.79),
             50: (22.26, 82.46)},
}

# ---------------------------------------------------------------------- Table 13 (binary tasks)
#: Table 13 (A.13; VGG-13 -> MobileNetV2-0.1, mean of five runs): task -> method -> (MLL, MCMI)
#: student top-1 %; ``"student"``: the student trained alone.
PAPER_TABLE13: dict[str, dict[str, Any]] = {
    "cifar-2x5": {"student": 76.94, "kd": (77.00, 77.41), "at": (67.39, 68.19), "cc": (77.19, 77.85),
                  "vid": (77.16, 77.34)},
    "cifar-26-45": {"student": 65.50, "kd": (69.70, 70.10), "at": (64.70, 65.43), "cc": (70.30, 70.75),
                    "vid": (69.25, 70.00)},
    "cifar-50-74": {"student": 66.30, "kd": (71.40, 71.20), "at": (67.10, 69.50), "cc": (69.70, 71.40),
                    "vid": (69.80, 69.80)},
}

# -------------------------------------------------------------------- Table 5 (Gaussian study)
#: Table 5 (synthetic Gaussian data), read from the paper's text: delta -> accuracy % and Pdist
#: per target (ground truth, MCMI KD, MLL KD, one-hot).
PAPER_TABLE5: dict[float, dict[str, dict[str, float]]] = {
    0.5: {"acc": {"ground_truth": 57.21, "mcmi": 57.02, "mll": 56.32, "one_hot": 55.48},
          "pdist": {"ground_truth": 0.0, "mcmi": 13.25, "mll": 14.41, "one_hot": 41.23}},
    1.0: {"acc": {"ground_truth": 69.68, "mcmi": 69.32, "mll": 68.88, "one_hot": 67.76},
          "pdist": {"ground_truth": 0.0, "mcmi": 9.02, "mll": 9.65, "one_hot": 34.52}},
    2.0: {"acc": {"ground_truth": 76.98, "mcmi": 76.54, "mll": 76.15, "one_hot": 75.71},
          "pdist": {"ground_truth": 0.0, "mcmi": 4.42, "mll": 4.77, "one_hot": 7.11}},
    4.0: {"acc": {"ground_truth": 81.68, "mcmi": 81.60, "mll": 81.57, "one_hot": 81.44},
          "pdist": {"ground_truth": 0.0, "mcmi": 2.44, "mll": 2.54, "one_hot": 3.18}},
}

__all__ = ["PAPER_GAINS", "PAPER_MCMI_MEAN_STD", "PAPER_REPRODUCED", "PAPER_STUDENT_BASELINE", "PAPER_TABLE1",
           "PAPER_TABLE13", "PAPER_TABLE3", "PAPER_TABLE5", "PAPER_TABLE6_LAMBDA", "PAPER_TABLE6_LAMBDA_CIFAR10",
           "PAPER_TABLE9", "PAPER_TEACHERS"]
