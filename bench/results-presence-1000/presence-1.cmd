chat-bench presence --addr 127.0.0.1:28559 --users 1100 --friends 1000 --login-concurrency 64 --storm-concurrency 128 --server-pid 3505 --label presence-1
