chat-bench one --addr 127.0.0.1:22472 --users 1000 --rate 10000 --duration 10 --server-pid 17720 --flood-rate 10000 --flood-kind unknown --label flood-unknown
