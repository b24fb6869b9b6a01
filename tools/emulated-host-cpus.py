#!/usr/bin/env python3
"""Where L1's vCPUs are, for the log of an L1 the host is about to end as frozen.

    emulated-host-cpus.py MONITOR_SOCKET KALLSYMS [SAMPLES]

Asks qemu's human monitor for every vCPU's registers a few times, a second apart, and prints
each vCPU's RIP with the kernel symbol it falls in, its privilege level, whether it is
halted, and CR3: a RIP that never moves is a CPU spinning in one place, one that moves is a
livelock. KALLSYMS is L1's /proc/kallsyms (Debian ships no real System.map). L1 and its
guests run the same Debian kernel: L1's is relocated (KASLR), a guest's, loaded as an ELF at
its link address, is not, so the same table names both. Both readings are printed.
"""

import bisect
import re
import socket
import sys
import time


def read_prompt(sock):
    buf = b""
    while not buf.endswith(b"(qemu) "):
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        buf += data
    return buf.decode(errors="replace")


def load_symbols(path):
    addrs, names = [], []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW":
                    addrs.append(int(parts[0], 16))
                    names.append(parts[2])
    except OSError:
        pass
    order = sorted(range(len(addrs)), key=addrs.__getitem__)
    return [addrs[i] for i in order], [names[i] for i in order]


def symbol(addrs, names, rip):
    i = bisect.bisect_right(addrs, rip) - 1
    if i < 0 or rip - addrs[i] > 0x100000:
        return "?"
    return f"{names[i]}+{rip - addrs[i]:#x}"


def main():
    sock_path, kallsyms = sys.argv[1], sys.argv[2]
    samples = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    addrs, names = load_symbols(kallsyms)
    # x86-64's link address of _text: a guest's kernel is there, L1's is slid by KASLR.
    slide = 0
    if "_text" in names:
        slide = addrs[names.index("_text")] - 0xFFFFFFFF81000000
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(sock_path)
    read_prompt(sock)
    for n in range(samples):
        sock.sendall(b"info registers -a\n")
        out = read_prompt(sock)
        cpu = None
        for line in out.splitlines():
            m = re.match(r"\s*CPU#(\d+)", line)
            if m:
                cpu = m.group(1)
            m = re.search(r"RIP=([0-9a-f]+) .*CPL=(\d).*HLT=(\d)", line)
            if m and cpu is not None:
                rip = int(m.group(1), 16)
                cr3 = re.search(r"CR3=([0-9a-f]+)", out[out.find(line):])
                print(
                    f"sample {n + 1} CPU#{cpu} RIP {rip:016x}"
                    f" (as L1: {symbol(addrs, names, rip)};"
                    f" as a guest: {symbol(addrs, names, rip + slide)})"
                    f" CPL {m.group(2)} HLT {m.group(3)} CR3 {cr3.group(1) if cr3 else '?'}"
                )
        if n + 1 < samples:
            time.sleep(1)


if __name__ == "__main__":
    try:
        main()
    except OSError as e:
        print(f"no answer from qemu's monitor: {e}")
