chat-bench one --addr 127.0.0.1:17298 --users 1000 --rate 10000 --duration 10 --server-pid 10169 --flood-rate 10000 --flood-kind chat --label tmpfs-flood-chat
