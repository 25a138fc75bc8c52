#!/usr/bin/python3
"""Builds the cluster tests' images with librbd (python3-rbd), seeded:

  workload.py POOL[/NAMESPACE] PREFIX

PREFIX-a: 20 MiB, 4 MiB objects: odd-sized writes at odd offsets, discards
(partial and whole objects), write-zeroes, data that is all zeros, a shrink
to a size that is not a multiple of 4 KiB and a grow, snapshots s1..s4 and
changes left in HEAD.
PREFIX-c: a clone of PREFIX-a@s2 (protected), written, snapshots c1, c2.
PREFIX-o: 1 MiB objects, stripe unit 64 KiB x 4, a few writes, snapshots t1, t2.
Prints the images and their snapshots, one per line: IMAGE SNAP...
"""
import random
import sys

import rados
import rbd

pool, _, namespace = sys.argv[1].partition("/")
prefix = sys.argv[2]
rng = random.Random(20261206)
MiB = 1 << 20


def noise(n):
    return bytes(rng.getrandbits(8) for _ in range(n)) if n < 4096 else rng.randbytes(n)


def scribble(img, count, size):
    for _ in range(count):
        n = rng.choice([1, 7, 511, 4095, 4097, 65537, 300000, 1 << 20])
        off = rng.randrange(0, max(1, size - n))
        img.write(noise(n), off)


cluster = rados.Rados(conffile="")
cluster.connect(timeout=30)
io = cluster.open_ioctx(pool)
if namespace:
    io.set_namespace(namespace)
r = rbd.RBD()
out = []

a = prefix + "-a"
r.create(io, a, 20 * MiB, old_format=False, features=61)
with rbd.Image(io, a) as img:
    scribble(img, 40, 20 * MiB)
    img.write(b"\0" * 8192, 12 * MiB + 4096)          # data that is zeros
    img.create_snap("s1")
    img.discard(1 * MiB + 123, 70000)                 # partial discard
    img.discard(8 * MiB, 4 * MiB)                     # a whole object
    img.write_zeroes(16 * MiB + 5, 1000)
    scribble(img, 15, 20 * MiB)
    img.create_snap("s2")
    img.protect_snap("s2")
    img.resize(13 * MiB + 1234)                       # shrink, odd size
    scribble(img, 5, 13 * MiB)
    img.create_snap("s3")
    img.resize(24 * MiB)                              # grow
    img.write(noise(5000), 23 * MiB + 17)
    img.write_zeroes(2 * MiB, 3 * MiB)
    img.create_snap("s4")
    scribble(img, 5, 24 * MiB)                        # HEAD differs from s4
    img.metadata_set("conf_rbd_cache", "false")
    img.metadata_set("owner", "rbdiff tests")
out.append([a, "s1", "s2", "s3", "s4"])

c = prefix + "-c"
r.clone(io, a, "s2", io, c, features=61)
with rbd.Image(io, c) as img:
    scribble(img, 10, 20 * MiB)
    img.discard(4 * MiB, 4 * MiB)                     # hides the parent's data
    img.create_snap("c1")
    img.write_zeroes(0, 300000)
    scribble(img, 5, 20 * MiB)
    img.create_snap("c2")
out.append([c, "c1", "c2"])

o = prefix + "-o"
r.create(io, o, 9 * MiB + 512, old_format=False, features=1, order=20,
         stripe_unit=64 * 1024, stripe_count=4)
with rbd.Image(io, o) as img:
    scribble(img, 20, 9 * MiB)
    img.create_snap("t1")
    img.discard(3 * MiB, 100000)
    scribble(img, 8, 9 * MiB)
    img.create_snap("t2")
out.append([o, "t1", "t2"])

io.close()
cluster.shutdown()
for line in out:
    print(" ".join(line))
