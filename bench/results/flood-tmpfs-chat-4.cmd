chat-bench one --addr 127.0.0.1:12876 --users 1000 --rate 10000 --duration 10 --server-pid 10129 --flood-rate 10000 --flood-kind chat --label tmpfs-flood-chat
