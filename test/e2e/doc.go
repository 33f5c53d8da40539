// Package e2e runs moat between real Postfix instances on loopback.
//
// A Sender is a Postfix whose only job is to deliver to one relay host (moat,
// or a Backend directly), bound to a source address of the test's choosing
// so the test can play any client host in 127.0.0.0/8. A Backend is a
// Postfix that accepts mail for example.test into Maildirs and, like the
// real mail server behind moat, learns the client address from a PROXY
// header. Moat runs the moat binary, built once per test run.
//
// Every instance lives in its own temporary directory with its own
// config_directory, queue_directory, data_directory and maillog_file, and
// every master process is a child of the test binary: it is stopped when the
// test ends, killed by the kernel if the test binary dies, and exits by
// itself after a while in any case. Nothing here touches the system's own
// Postfix configuration, and nothing ever leaves loopback: the backend's
// transports for foreign domains are "error" and no instance does DNS.
//
// The tests need root (Postfix's master starts as root) and the Debian
// packages postfix and swaks; they fail, rather than skip, without them.
package e2e
