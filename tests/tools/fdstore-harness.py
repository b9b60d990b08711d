#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The service manager's half of sd_notify's file descriptor store, for
tests on machines whose PID 1 is not systemd.

    fdstore-harness.py STATEDIR -- PROGRAM ARGS...

Binds STATEDIR/notify (AF_UNIX datagram) and starts PROGRAM with
NOTIFY_SOCKET pointing at it. Messages: READY=1, STATUS=, STOPPING=1 are
logged; FDSTORE=1 + FDNAME=N keeps the SCM_RIGHTS descriptors under name N
(a descriptor for a file already stored is dropped, as systemd does);
FDSTOREREMOVE=1 + FDNAME=N closes every descriptor named N.

SIGUSR1: restart PROGRAM the way systemd restarts a service (SIGTERM, wait);
SIGUSR2: the same after SIGKILL (a crash). The new process gets the store at
fd 3.. with LISTEN_FDS, LISTEN_PID (its own pid) and LISTEN_FDNAMES.
SIGTERM: stop PROGRAM, close the store, exit.
Lines on stdout: "started pid=N fds=K", "ready pid=N", "store N=K total=T",
"remove N", "exited rc=R".
"""
import array, ctypes, os, signal, socket, sys, time

state, argv = sys.argv[1], sys.argv[sys.argv.index('--') + 1:]
path = os.path.join(state, 'notify')
try:
    os.unlink(path)
except FileNotFoundError:
    pass
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
store = []          # [(name, fd)]
child = None
pending = []        # signals to act on


def say(*a):
    print(*a, flush=True)


def start():
    global child
    names = [n for n, _ in store]
    fds = [f for _, f in store]
    pid = os.fork()
    if pid == 0:
        try:
            # Move the store out of the way, then to 3.. in order.
            base = 3 + len(fds) + 64
            high = []
            for i, f in enumerate(fds):
                high.append(os.dup2(f, base + i, inheritable=False))
            for i, f in enumerate(high):
                os.dup2(f, 3 + i, inheritable=True)
            os.closerange(3 + len(fds), 65536)
            env = dict(os.environ)
            env['NOTIFY_SOCKET'] = path
            if fds:
                env['LISTEN_FDS'] = str(len(fds))
                env['LISTEN_PID'] = str(os.getpid())
                env['LISTEN_FDNAMES'] = ':'.join(names)
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    child = pid
    say('started pid=%d fds=%d' % (pid, len(fds)))


_libc = ctypes.CDLL(None, use_errno=True)
_SYS_KCMP = {'x86_64': 312, 'aarch64': 272}.get(os.uname().machine)


def same_file(a, b):
    """The same open file (struct file), as systemd's same_fd() decides:
    all eventfds share one anonymous inode, so an inode compare is wrong."""
    if _SYS_KCMP is not None:
        me = os.getpid()
        r = _libc.syscall(_SYS_KCMP, me, me, 0, a, b)   # KCMP_FILE
        if r >= 0:
            return r == 0
    sa, sb = os.fstat(a), os.fstat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino) and \
        os.readlink('/proc/self/fd/%d' % a).startswith('/')


def on_msg():
    fds = array.array('i')
    try:
        data, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(253 * fds.itemsize),
                                      socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    got = []
    for level, kind, d in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array('i')
            a.frombytes(d[:len(d) - (len(d) % a.itemsize)])
            got.extend(a)
    kv = dict(l.split('=', 1) for l in data.decode(errors='replace').split('\n') if '=' in l)
    name = kv.get('FDNAME', 'stored')
    if kv.get('FDSTORE') == '1':
        for f in got:
            if any(same_file(f, g) for _, g in store):
                os.close(f)
            else:
                store.append((name, f))
        say('store %s=%d total=%d' % (name, len(got), len(store)))
        got = []
    if kv.get('FDSTOREREMOVE') == '1':
        for n, f in [x for x in store if x[0] == name]:
            os.close(f)
            store.remove((n, f))
        say('remove %s total=%d' % (name, len(store)))
    for f in got:
        os.close(f)
    if kv.get('READY') == '1':
        say('ready pid=%d total=%d' % (child or 0, len(store)))
    if 'STOPPING' in kv:
        say('stopping')
    return True


def wait_child():
    global child
    while True:
        while on_msg():
            pass
        p, st = os.waitpid(child, os.WNOHANG)
        if p:
            say('exited rc=%d' % (os.waitstatus_to_exitcode(st)))
            child = None
            return
        time.sleep(0.02)


for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
    signal.signal(s, lambda n, f: pending.append(n))
start()
while True:
    if pending:
        n = pending.pop(0)
        if n in (signal.SIGUSR1, signal.SIGUSR2):
            if child:
                os.kill(child, signal.SIGTERM if n == signal.SIGUSR1 else signal.SIGKILL)
                wait_child()
            start()
            continue
        if child:
            os.kill(child, signal.SIGTERM)
            wait_child()
        for _, f in store:
            os.close(f)
        sys.exit(0)
    while on_msg():
        pass
    if child:
        p, st = os.waitpid(child, os.WNOHANG)
        if p:
            say('exited rc=%d' % (os.waitstatus_to_exitcode(st)))
            child = None
    time.sleep(0.02)
