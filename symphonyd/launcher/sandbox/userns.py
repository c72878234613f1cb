"""No user namespaces inside a bubblewrap sandbox (docs/design/0852-no-user-namespaces.md).

An unprivileged agent could ``unshare`` a user namespace (and, with the capabilities it then
holds there, network and mount namespaces). Not an escape, but kernel attack surface an agent
never needs. bubblewrap's own ``--disable-userns`` needs ``--unshare-user``, and a user
namespace that bubblewrap makes for root maps the agent's uid to root outside (0806), so the
launcher makes the namespace itself, one step before bubblewrap:

1. fork a helper that stays in the host's user namespace, ``unshare(CLONE_NEWUSER)``;
2. the helper (root, ``CAP_SETUID``/``CAP_SETGID`` there) writes the identity map
   ``0 0 4294967295`` for uids and gids: every uid inside is the same uid outside, so file
   ownership and permission checks are exactly the host's, and the agent stays its own uid;
3. as root of the new namespace, write ``0`` to ``/proc/sys/user/max_user_namespaces``: the
   kernel checks that limit of every ancestor when a namespace is created, so nothing in this
   one (or below) can make another (``ENOSPC``), and only ``CAP_SYS_RESOURCE`` in this
   namespace could raise it, which the agent never has (setpriv empties every set);
4. exec the rest of the chain (bubblewrap, which then checks the result itself with
   ``--assert-userns-disabled``).

Any failure exits 125 before anything of the agent runs. Where even root cannot make a user
namespace (``user.max_user_namespaces`` is 0 on the host, no ``CONFIG_USER_NS``), neither can
the agent: the gate then goes straight on and bubblewrap's assertion decides. The script is the
launcher's own interpreter with ``-I -S`` and the standard library only (``os.unshare``
arrived in 3.12).
"""

from __future__ import annotations

import sys

GATE = """\
import os, sys
def fail(what):
    sys.stderr.write("symphonyd: user namespace gate: " + what + "\\n")
    os._exit(125)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    if os.read(r, 1) != b"u":
        os._exit(1)
    try:
        for name in ("uid_map", "gid_map"):
            with open("/proc/%d/%s" % (os.getppid(), name), "w") as f:
                f.write("0 0 4294967295\\n")
    except OSError as exc:
        sys.stderr.write("symphonyd: cannot map the user namespace: %s\\n" % exc)
        os._exit(1)
    os._exit(0)
os.close(r)
def unshare_user():
    if hasattr(os, "unshare"):  # 3.12+: no ctypes (and no libffi) to load
        try:
            os.unshare(os.CLONE_NEWUSER)
        except OSError:
            return False
        return True
    import ctypes
    return ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0
if not unshare_user():
    # Even root may not make one here (user.max_user_namespaces is 0 on the host, a seccomp
    # filter, no CONFIG_USER_NS), so neither may the agent; bwrap's assertion checks that.
    os.close(w)
    os.waitpid(pid, 0)
else:
    os.write(w, b"u")
    os.close(w)
    if os.waitpid(pid, 0)[1] != 0:
        fail("the id maps were not written")
    try:
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0\\n")
    except OSError as exc:
        fail("cannot disable nested user namespaces: %s" % exc)
try:
    os.execvp(sys.argv[1], sys.argv[1:])
except OSError as exc:
    fail("exec %s: %s" % (sys.argv[1], exc))
"""


def gate_prefix() -> list[str]:
    """The argv prefix that runs the rest of the chain in a user namespace of its own with
    user namespaces disabled below it."""
    return [sys.executable, "-I", "-S", "-c", GATE]
