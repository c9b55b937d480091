# Put in every slug's .profile.d/ by scripts/make-real-apps, as a buildpack would: sizes the
# app's concurrency from the dyno's memory limit, read from its cgroup (v2, then v1).
# WEB_MEMORY (MB per process) may come from a config var.
limit=
for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
        if [ -r "$f" ]; then
                read -r limit <"$f"
                break
        fi
done
case "$limit" in
"" | max | *[!0-9]*) limit=536870912 ;; # unknown or unlimited: a standard-1x, 512 MiB
esac
[ "$limit" -le 1099511627776 ] || limit=536870912 # cgroup v1's "unlimited" is a huge number
export MEMORY_AVAILABLE=$((limit / 1048576))
export WEB_MEMORY=${WEB_MEMORY:-128}
WEB_CONCURRENCY=$((MEMORY_AVAILABLE / WEB_MEMORY))
[ "$WEB_CONCURRENCY" -ge 1 ] || WEB_CONCURRENCY=1
export WEB_CONCURRENCY
unset limit f
