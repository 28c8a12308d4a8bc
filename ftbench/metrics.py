"""The metrics a classifier is scored by, and the majority-class baseline it must clear."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict:
    predictions = np.asarray(logits).argmax(axis=-1)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1_macro": float(f1_score(labels, predictions, average="macro")),
    }


def majority_baseline(train_labels: list[int], test_labels: list[int], label_names: list[str]) -> dict:
    """What always answering the training split's most frequent class scores on the test split: the floor a
    trained classifier must clear (on 3-class tweets about 0.42 accuracy; ties go to the lower class id)."""
    majority = int(np.bincount(train_labels, minlength=len(label_names)).argmax())
    constant = np.zeros((len(test_labels), len(label_names)))
    constant[:, majority] = 1.0
    return {"label": label_names[majority], **classification_metrics(constant, np.asarray(test_labels))}
