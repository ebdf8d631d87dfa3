"""The seccomp filter every sandboxed process runs under: system calls a command never needs
and that widen the kernel surface it can attack fail with EPERM.

bubblewrap loads it (`--seccomp FD`) just before it execs the sandbox's first process, so the
supervisor and everything it starts inherit it, and no process can lift it. bwrap takes a
compiled classic-BPF program, which libseccomp would write; its Python bindings are not
installed here, so the program is written below with `struct`: a check of the architecture, then
one comparison per denied call. libseccomp's own output for such a denylist has the same shape.

Denied with EPERM: the keyring (keyctl, add_key, request_key), namespaces (unshare, setns, and
clone with CLONE_NEWUSER), mounts (mount, umount2, pivot_root and the new mount API: open_tree,
move_mount, fsopen, fsconfig, fsmount, fspick, mount_setattr), ptrace, perf_event_open, bpf,
userfaultfd, kexec_load, kexec_file_load, init_module, finit_module, delete_module and
open_by_handle_at. clone3 gets ENOSYS instead: its flags sit in memory a filter cannot read, and
ENOSYS makes the C library fall back to clone, whose flags it can. Any other architecture (a
32-bit call on a 64-bit kernel, x32) kills the process: its numbers mean other calls.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# Linux's audit architecture ids (AUDIT_ARCH_*) and the numbers of the denied calls there, from
# the kernel's <asm/unistd_64.h> (x86_64) and <asm-generic/unistd.h> (aarch64).
_ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {
        "keyctl": 250, "add_key": 248, "request_key": 249, "unshare": 272, "setns": 308, "mount": 165,
        "umount2": 166, "pivot_root": 155, "ptrace": 101, "perf_event_open": 298, "bpf": 321,
        "userfaultfd": 323, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "open_by_handle_at": 304, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "clone": 56, "clone3": 435}),
    "aarch64": (0xC00000B7, {
        "keyctl": 219, "add_key": 217, "request_key": 218, "unshare": 97, "setns": 268, "mount": 40,
        "umount2": 39, "pivot_root": 41, "ptrace": 117, "perf_event_open": 241, "bpf": 280,
        "userfaultfd": 282, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "open_by_handle_at": 265, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "clone": 220, "clone3": 435}),
}
DENIED = ("keyctl", "add_key", "request_key", "unshare", "setns", "mount", "umount2", "pivot_root", "ptrace",
          "perf_event_open", "bpf", "userfaultfd", "kexec_load", "kexec_file_load", "init_module",
          "finit_module", "delete_module", "open_by_handle_at", "open_tree", "move_mount", "fsopen",
          "fsconfig", "fsmount", "fspick", "mount_setattr")
_X32_BIT = 0x40000000  # x86_64 numbers at or above it are the x32 ABI's
_CLONE_NEWUSER = 0x10000000

# Classic BPF (linux/filter.h, linux/seccomp.h). The program reads struct seccomp_data:
# int nr at offset 0, u32 arch at 4, u64 args[6] from 16 (args[0]'s low half at 16 on little endian).
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_NR, _ARCH, _ARG0_LOW = 0, 4, 16
_ALLOW, _KILL_PROCESS = 0x7FFF0000, 0x80000000


def _errno(code: int) -> int:
    return 0x00050000 | code  # SECCOMP_RET_ERRNO


class UnsupportedArch(RuntimeError):
    """No syscall table here for this machine's architecture."""


def deny_filter(machine: str | None = None) -> bytes:
    """The compiled filter for `machine` (default: this one's), as bwrap's --seccomp reads it."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise UnsupportedArch(f"no seccomp syscall table for {machine}")
    arch, numbers = _ARCHES[machine]
    # (code, jump if true, jump if false, k); jumps name a label ("next": the next instruction),
    # resolved to offsets below.
    program: list[tuple[int, str, str, int]] = [
        (_LD_W_ABS, "next", "next", _ARCH),
        (_JEQ, "next", "kill", arch),
        (_LD_W_ABS, "next", "next", _NR),
    ]
    if machine == "x86_64":
        program.append((_JGE, "kill", "next", _X32_BIT))
    program += [(_JEQ, "eperm", "next", numbers[name]) for name in DENIED]
    program += [
        (_JEQ, "enosys", "next", numbers["clone3"]),
        (_JEQ, "next", "allow", numbers["clone"]),
        (_LD_W_ABS, "next", "next", _ARG0_LOW),  # clone's flags
        (_JSET, "eperm", "allow", _CLONE_NEWUSER),
    ]
    labels = {"allow": len(program), "eperm": len(program) + 1, "enosys": len(program) + 2,
              "kill": len(program) + 3}
    program += [(_RET, "next", "next", _ALLOW), (_RET, "next", "next", _errno(errno.EPERM)),
                (_RET, "next", "next", _errno(errno.ENOSYS)), (_RET, "next", "next", _KILL_PROCESS)]

    def offset(at: int, label: str) -> int:
        return 0 if label == "next" else labels[label] - at - 1

    return b"".join(struct.pack("<HBBI", code, offset(at, jt), offset(at, jf), k)
                    for at, (code, jt, jf, k) in enumerate(program))


def filter_fd(machine: str | None = None) -> int:
    """A pipe's read end holding the filter, for bwrap's --seccomp (it reads to the end). The
    caller passes it to bwrap and closes it after."""
    program = deny_filter(machine)
    read, write = os.pipe()
    try:
        os.write(write, program)  # a few hundred bytes: far below a pipe's buffer
    finally:
        os.close(write)
    return read
