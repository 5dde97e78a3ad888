"""Gradient routing: which code dims an image's reconstruction gradient may train.

This is the one idea that separates this model from a plain VAE. In backprop the decoder hands
back dL_recon/dz, one row per image and one column per code dim. Before it flows on into the
encoder it is multiplied by a mask whose row n says which dims image n may train. With one dim
per digit the mask is one-hot in the labels:

    mask = np.zeros((N, 10))
    mask[np.arange(N), labels] = 1          # a "3" may train dim 3 only
    dz = dz * mask                          # the routing step in VAE.backward

so the reconstruction error of a "3" shapes the encoder only through dim 3, and dim 3 comes to
mean "three". Only the reconstruction gradient is routed: the KL (and L1) gradient of a "3"
still reaches every dim, the forward pass is untouched, and the decoder still learns from all
of z.

`Routing` is that mask, generalised in two ways. A label may own a *group* of dims rather than
one (two dims per digit; or digits 0-4 sharing the first half of a 32-dim code, the Gradient
Routing paper's MNIST experiment). And dims in no group are *free*: every image trains them
(the style dims, docs/style.md). Row n of the mask is 1 on the dims of label n's group and on
the free dims, 0 on every other group's dims. The same description says how to read a label's
group back off a code (the group whose dims have the largest mean), what a typical code of each
label looks like, and how to switch a code over to another label.

Glossary: N images (or codes), C code dims, G groups, L labels (10 digits).
"""

import numpy as np

DIGITS = 10


class Routing:
    """Groups of code dims, and the group each label's gradient is routed to.

    groups: G lists of dims, disjoint. label_group: (L,) the group of each label. code_dim: C;
    dims in no group are free. Free dims must come after the grouped ones (the model treats the
    first K = number of grouped dims as the routed code and the rest as style).
    """

    def __init__(self, name, groups, label_group, code_dim, group_names=None):
        self.name = name
        self.groups = [np.array(g, dtype=np.intp) for g in groups]
        self.label_group = np.array(label_group, dtype=np.intp)
        self.code_dim = int(code_dim)
        self.group_names = list(group_names) if group_names is not None else \
            [str(g) for g in range(len(self.groups))]
        self._validate()
        # allowed[l, d] = 1 if label l may train dim d: its own group's dims and the free dims.
        self.allowed = np.zeros((self.labels, self.code_dim))            # (L, C)
        for label, g in enumerate(self.label_group):
            self.allowed[label, self.groups[g]] = 1.0
        self.allowed[:, self.routed_dims:] = 1.0

    # ---------------------------------------------------------------- the mask (backprop)
    def mask(self, labels, dtype=np.float64):
        """labels (N,) -> mask (N, C): row n is 1 on the dims label n may train, 0 elsewhere."""
        labels = self.check_labels(labels)
        return self.allowed[labels].astype(dtype)

    # ---------------------------------------------------------------- reading codes (tools)
    def group_scores(self, mu):
        """mu (N, C) -> (N, G): the mean of mu over each group's dims."""
        mu = np.asarray(mu)
        return np.stack([mu[:, dims].mean(axis=1) for dims in self.groups], axis=1)

    def read_group(self, mu):
        """mu (N, C) -> (N,): the group with the largest mean, the model's answer (no label used)."""
        return np.argmax(self.group_scores(mu), axis=1)

    def prototypes(self, codes, labels, fallback):
        """codes (N, C), labels (N,), fallback (C,) -> (L, C): a typical code of each label.

        Row l is 0 outside label l's group; on its group's dims it is the median code of the
        images labelled l, or fallback on those dims if that median is not positive anywhere
        (or no image is an l): a dim that never fires still gets a value that draws something.
        """
        codes, labels = np.asarray(codes, dtype=np.float64), np.asarray(labels)
        proto = np.zeros((self.labels, self.code_dim))
        for label, g in enumerate(self.label_group):
            dims = self.groups[g]
            mine = codes[labels == label][:, dims]                        # (n_l, |group|)
            typical = np.median(mine, axis=0) if len(mine) else np.zeros(len(dims))
            proto[label, dims] = typical if typical.max() > 0 else np.asarray(fallback)[dims]
        return proto

    def switch(self, codes, label, prototypes):
        """codes (N, C) -> (N, C): every group's dims cleared, then label's group set to its
        prototype; the free dims keep their values. A "3" redrawn as a `label` in its own hand."""
        codes = np.array(codes, dtype=np.float64, ndmin=2)                # a copy, (N, C)
        codes[:, :self.routed_dims] = 0.0
        dims = self.groups[self.label_group[label]]
        codes[:, dims] = prototypes[label, dims]
        return codes

    # ---------------------------------------------------------------- description
    @property
    def labels(self):
        """L, the number of labels (10 digits)."""
        return len(self.label_group)

    @property
    def routed_dims(self):
        """K, the number of dims in some group; dims K..C-1 are free."""
        return sum(len(g) for g in self.groups)

    @property
    def free_dims(self):
        """S = C - K, the dims every image trains (the style dims)."""
        return self.code_dim - self.routed_dims

    def labels_of(self, group):
        """The labels routed to a group, e.g. [0, 1, 2, 3, 4] for the first of the halves."""
        return [int(l) for l in np.flatnonzero(self.label_group == group)]

    def check_labels(self, labels, N=None, where="routing"):
        """labels -> an integer array (N,) in 0..L-1, or a one-line ValueError."""
        labels = np.asarray(labels)
        shape = f"({N},)" if N is not None else "(N,)"
        if labels.ndim != 1 or (N is not None and labels.shape[0] != N) \
                or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{where}: labels must be integers of shape {shape}, "
                             f"got {labels.dtype} {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.labels):
            raise ValueError(f"{where}: labels must lie in 0..{self.labels - 1} (routing "
                             f"{self.name}), got values from {labels.min()} to {labels.max()}")
        return labels

    def to_dict(self):
        """A JSON-able description, stored in every checkpoint."""
        return {"name": self.name, "groups": [g.tolist() for g in self.groups],
                "label_group": self.label_group.tolist(), "code_dim": self.code_dim,
                "group_names": self.group_names}

    @classmethod
    def from_dict(cls, d):
        return cls(d["name"], d["groups"], d["label_group"], d["code_dim"], d.get("group_names"))

    def __eq__(self, other):
        return isinstance(other, Routing) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return (f"Routing({self.name!r}: {self.labels} labels -> {len(self.groups)} groups "
                f"over {self.routed_dims} dims, {self.free_dims} free dims)")

    def _validate(self):
        grouped = np.concatenate(self.groups) if self.groups else np.zeros(0, np.intp)
        K = len(grouped)
        if not self.groups or any(len(g) == 0 for g in self.groups):
            raise ValueError(f"Routing {self.name}: every group needs at least one dim")
        if sorted(grouped.tolist()) != list(range(K)) or K > self.code_dim:
            raise ValueError(f"Routing {self.name}: the groups must cover dims 0..K-1 once each "
                             f"(free dims after them), got {[g.tolist() for g in self.groups]}")
        if self.label_group.ndim != 1 or self.label_group.min(initial=0) < 0 \
                or self.label_group.max(initial=0) >= len(self.groups):
            raise ValueError(f"Routing {self.name}: label_group must name groups 0.."
                             f"{len(self.groups) - 1}, got {self.label_group.tolist()}")
        if len(self.group_names) != len(self.groups):
            raise ValueError(f"Routing {self.name}: one name per group")


# -------------------------------------------------------------------- the routings on offer
def one_per_digit(style=0, digits=DIGITS):
    """Digit k trains dim k (the one-hot mask above); `style` free dims after them."""
    return Routing("one-per-digit", [[k] for k in range(digits)], range(digits),
                   digits + style, [str(k) for k in range(digits)])


def two_per_digit(style=0):
    """Digit k trains dims 2k and 2k + 1: room for two features of each digit."""
    return Routing("two-per-digit", [[2 * k, 2 * k + 1] for k in range(DIGITS)], range(DIGITS),
                   2 * DIGITS + style, [str(k) for k in range(DIGITS)])


def halves(style=0, half=16):
    """Digits 0-4 train dims 0..15, digits 5-9 dims 16..31 (Cloud et al. 2024, section 4.1)."""
    return Routing("halves", [range(half), range(half, 2 * half)], [0] * 5 + [1] * 5,
                   2 * half + style, ["0-4", "5-9"])


ROUTINGS = {"one-per-digit": one_per_digit, "two-per-digit": two_per_digit, "halves": halves}
