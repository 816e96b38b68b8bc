chat-bench presence --addr 127.0.0.1:41785 --users 8000 --friends 0 --login-concurrency 64 --storm-concurrency 128 --server-pid 8929 --label presence-baseline-2
