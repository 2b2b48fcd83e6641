# Sums a whole-machine perf profile into rough categories, for profile.sh.
# Input: `perf report -t '@' --sort comm,dso,sym`, lines "share@comm@dso@sym".
# The categories are read off symbol names: rough, but the same rules for
# every build, so two profiles compare.
BEGIN { FS = "@" }
/^#/ || NF < 4 { next }
{
  share = $1; sub(/%/, "", share); share += 0
  comm = $2; dso = $3; sym = $4
  gsub(/^ +| +$/, "", comm); gsub(/^ +| +$/, "", dso)
  if (comm ~ /^swapper/) c = "idle"
  else if (comm ~ /^wrk/) c = "wrk (the load generator)"
  else if (dso ~ /kernel/) c = kernel(sym)
  else if (sym ~ /(^|[^a-z])_?mi_|malloc|free/) c = "allocator (mimalloc)"
  else if (sym ~ /sled::/) c = "sled"
  else if (sym ~ /memmove|memcpy|memcmp|memset|memchr/) c = "memory copies, compares"
  else if (sym ~ /hyper::|axum|http::|h1::|httparse|tower|matchit/) c = "HTTP (hyper, axum)"
  else if (sym ~ /tokio::|futures|PollFn/) c = "tokio, futures"
  else if (sym ~ /serde|json|base64/) c = "serde, JSON, base64"
  else if (sym ~ /prometheus/) c = "metrics"
  else if (sym ~ /clock_gettime/) c = "clock reads"
  else if (sym ~ /cluster::|kvapi::/) c = "cluster code"
  else c = "other user space"
  total[c] += share
}
END { for (c in total) printf "%6.2f%%  %s\n", total[c], c }

function kernel(sym) {
  if (sym ~ /tcp|_ip|ip_|ipt_|nf_|skb|sock|net_|__dev|napi|inet|conntrack|neigh|bbr|backlog|_iter|recv|send/)
    return "kernel: loopback TCP"
  if (sym ~ /switch|schedul|futex|spin|wake|irq|idle|halt|enqueue|dequeue|pick_next|update_curr|ttwu/)
    return "kernel: scheduling, wakeups"
  if (sym ~ /epoll|syscall|entry|poll|vfs_|fdget|fput/) return "kernel: syscalls, epoll"
  if (sym ~ /ext4|jbd2|blk|bio|iowrite|virtio|nvme|fsync|writeback|filemap/) return "kernel: disk, fsync"
  return "kernel: other"
}
