chat-bench presence --addr 127.0.0.1:44465 --users 8000 --friends 0 --login-concurrency 64 --storm-concurrency 128 --server-pid 13268 --label presence-baseline-1
