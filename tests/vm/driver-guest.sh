# SPDX-License-Identifier: MIT
# Guest half of test-driver.sh (installed as /test.sh): load ivsock.ko, run
# devcheck (pair, then windows), unplug (role a: driver unbind from sysfs
# with the device and windows open and mapped; role b: the host's QMP
# device_del), a refused rmmod while a window lives (role a), rmmod, scan
# dmesg.
fail=0
say() { echo "== [$IVSOCK_ROLE] $*"; }

say "insmod ivsock.ko"
insmod /ivsock.ko || exit 1
[ -c /dev/ivsock0 ] || { say "no /dev/ivsock0"; exit 1; }
bdf=$(basename "$(readlink /sys/class/misc/ivsock0/device)")
say "device $bdf"

say "devcheck pair"
/devcheck pair || fail=1

say "devcheck windows (API 2; an unprivileged child holds window fds)"
/devcheck windows || fail=1

case $IVSOCK_ROLE in
a)
	say "driver unbind with the device open, mapped and polled," \
	    "while two processes hammer it"
	/devcheck hammer >/tmp/h1.out 2>&1 &
	h1=$!
	/devcheck hammer >/tmp/h2.out 2>&1 &
	h2=$!
	/devcheck unplug >/tmp/unplug.out 2>&1 &
	pid=$!
	i=0
	while ! grep -q IVSOCK-UNPLUG-READY /tmp/unplug.out && [ $i -lt 300 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	sleep 1
	echo "$bdf" >/sys/bus/pci/drivers/ivsock/unbind
	wait $pid || fail=1
	wait $h1 || fail=1
	wait $h2 || fail=1
	cat /tmp/unplug.out /tmp/h1.out /tmp/h2.out
	say "rebind"
	echo "$bdf" >/sys/bus/pci/drivers/ivsock/bind
	/devcheck info || fail=1
	say "rmmod while a window is mapped (device fd closed): refused"
	rm -f /tmp/winhold.stop
	/devcheck winhold >/tmp/winhold.out 2>&1 &
	pid=$!
	i=0
	while ! grep -q IVSOCK-WINHOLD-READY /tmp/winhold.out && [ $i -lt 300 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if rmmod ivsock 2>/dev/null; then
		say "rmmod succeeded under a live window"
		fail=1
	fi
	[ -e /sys/module/ivsock ] || { say "module gone under a live window"; fail=1; }
	touch /tmp/winhold.stop
	wait $pid || fail=1
	cat /tmp/winhold.out
	;;
b)
	say "hot-unplug (QMP device_del from the host)"
	/devcheck unplug || fail=1
	;;
esac

say "rmmod"
# In the background with a watchdog: a hang dumps the blocked tasks.
rmmod ivsock &
pid=$!
i=0
while [ -d /proc/$pid ] && [ $i -lt 200 ]; do
	sleep 0.1
	i=$((i + 1))
done
if [ -d /proc/$pid ]; then
	say "rmmod hangs"
	cat /proc/$pid/stack 2>/dev/null
	echo w >/proc/sysrq-trigger
	fail=1
else
	wait $pid || fail=1
fi
[ ! -e /sys/module/ivsock ] || { say "module still loaded"; fail=1; }
if dmesg | grep -E 'WARNING|BUG|Oops|Call Trace'; then
	say "kernel complained"
	fail=1
fi
say "fail=$fail"
exit $fail
