chat-bench presence --addr 127.0.0.1:41919 --users 8000 --friends 50 --login-concurrency 64 --storm-concurrency 128 --server-pid 18446 --label presence-3
