"""Verification of the log's proofs: RFC 9162 §2.1.3.2 and §2.1.4.2, as the witness command and outside
monitors run them.

Pure. Written from the RFC's verification algorithms, apart from the proof generators of
`invoicing/merkle.py`: the only thing shared is `node_hash`.
"""

from __future__ import annotations

from collections.abc import Sequence

from invoicing.merkle import node_hash
from invoicing.tiles import HASH_SIZE


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether `proof` shows the leaf hash `leaf` at `index` in the tree of `size` and `root`: the
    algorithm of RFC 9162 §2.1.3.2. It checks the proof's length against `size` but does not bind
    `size` to `root`: take both from one verified checkpoint."""
    if not 0 <= index < size or any(len(p) != HASH_SIZE for p in proof):
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(m: int, n: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether `proof` shows the tree of size `m` and `old_root` is a prefix of the tree of size `n`
    and `new_root`: the algorithm of RFC 9162 §2.1.4.2, for 1 <= m <= n (m == n wants an empty proof
    and equal roots). As with `verify_inclusion`, each size must come with its root from one verified
    checkpoint."""
    if not 1 <= m <= n or any(len(c) != HASH_SIZE for c in proof):
        return False
    if m == n:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = [old_root, *proof] if m & (m - 1) == 0 else list(proof)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0
