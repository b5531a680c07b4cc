import sys, collections
keys = sys.argv[2:]
tot = 0; hits = collections.Counter()
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n); tot += n
    for k in keys:
        if k in stack:
            hits[k] += n
print("total s", tot / 20)
for k in keys:
    print(f"{hits[k]/20:8.1f} s  {k}")
