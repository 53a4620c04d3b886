#!/bin/busybox sh
# /init of the Linux guest of scripts/vs-linux.py: zram as the swap device
# (swapon and swapoff are the scripts' statements), then the interpreter over
# every script, then power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# No address-space randomisation: the heap of a static binary may otherwise
# land among the scripts' fixed ranges.
echo 0 > /proc/sys/kernel/randomize_va_space
echo "VSLINUX kernel $(uname -r) $(uname -v)"
for m in $(cat /lib/modules/load.order); do
  insmod /lib/modules/$m.ko || echo "VSLINUX-ERROR insmod $m failed"
done
if [ -e /sys/block/zram0 ]; then
  echo 256M > /sys/block/zram0/disksize && mkswap /dev/zram0 >/dev/null || echo "VSLINUX-ERROR zram setup failed"
else
  echo "VSLINUX-ERROR no zram0"
fi
echo "VSLINUX cpus=$(grep -c ^processor /proc/cpuinfo) thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled)"
echo "VSLINUX-BEGIN"
/interp $(ls /scripts/*.txt | sort)
echo "VSLINUX-END rc=$?"
poweroff -f
