chat-bench presence --addr 127.0.0.1:49399 --users 8000 --friends 50 --login-concurrency 64 --storm-concurrency 128 --server-pid 25252 --label presence-2
