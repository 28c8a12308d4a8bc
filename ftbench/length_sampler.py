"""The order examples are batched in: length-grouped shuffling for training, longest first for evaluation."""

from __future__ import annotations


def real_lengths(dataset) -> list[int]:
    """Tokens that are not padding, per example of a tokenized split."""
    return [int(sum(mask)) for mask in dataset["attention_mask"]]


class LengthGroupedShuffleSampler:
    """Training order with little padding that stays random: a seeded shuffle is cut into windows of
    `window_groups` groups, each window is sorted by length and cut into groups of `group_size` (one global
    batch: per-device batch x processes), and then the order of all the groups of the epoch is shuffled, so
    that long and short batches are interleaved at random rather than running long-to-short. The one group
    that may be short goes last, where a short final batch belongs. Every process draws the same order
    (same seed and epoch); in several processes each takes its share of every group."""

    def __init__(self, lengths: list[int], group_size: int, seed: int, window_groups: int = 50):
        self.lengths = lengths
        self.group_size = group_size
        self.seed = seed
        self.window = group_size * window_groups
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def groups(self) -> list[list[int]]:
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        shuffled = torch.randperm(len(self.lengths), generator=generator).tolist()
        groups = []
        for start in range(0, len(shuffled), self.window):
            window = sorted(shuffled[start:start + self.window], key=self.lengths.__getitem__)
            groups += [window[i:i + self.group_size] for i in range(0, len(window), self.group_size)]
        short = [g for g in groups if len(g) < self.group_size]
        full = [g for g in groups if len(g) == self.group_size]
        order = torch.randperm(len(full), generator=generator).tolist()
        return [full[k] for k in order] + short

    def __iter__(self):
        groups = self.groups()
        self.epoch += 1  # a new order next epoch even if nobody calls set_epoch
        return iter([index for group in groups for index in group])


def length_sorted_order(lengths: list[int]) -> list[int]:
    """Evaluation order, longest first: batches of similar lengths, and any out-of-memory error comes at once."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])
