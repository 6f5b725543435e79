"""Prints N keys (one a line) that all fall in the same hash bucket of a
vlimit zone under the hash the module used before its hash was keyed: the
wyhash-style mix with fixed, public seeds (shm/table.rs before the change),
for a `key=` key (kind tag 5) of at most 16 bytes. The low BITS bits of
their hashes are equal, so they share a bucket in any zone of up to 2**BITS
buckets. This is what a client choosing `X-Api-Key` values could do.

usage: vlimit_old_hash_collisions.py N BITS"""
import sys

SEED0, SEED1 = 0xA0761D6478BD642F, 0xE7037ED1A0B428DB
KIND_KEY = 5
M64 = (1 << 64) - 1


def mum(a, b):
    product = a * b
    return (product & M64) ^ (product >> 64)


def old_hash(key: bytes) -> int:
    padded = key.ljust(16, b"\0")
    w0 = int.from_bytes(padded[:8], "little")
    w1 = int.from_bytes(padded[8:], "little")
    return mum(w0 ^ SEED1 ^ len(key), w1 ^ SEED0 ^ (KIND_KEY << 56))


def main():
    count, bits = int(sys.argv[1]), int(sys.argv[2])
    mask = (1 << bits) - 1
    target = old_hash(b"tenant-0") & mask
    found = [b"tenant-0"]
    n = 0
    while len(found) < count:
        n += 1
        key = b"tenant-%d" % n
        if old_hash(key) & mask == target:
            found.append(key)
    for key in found:
        print(key.decode())


main()
