// Package reputation gathers evidence about client hosts from outside the
// SMTP session: DNS block and allow lists scored the way Postfix postscreen
// scores them, counts of black hosts per network and per autonomous system
// (network escalation), imported DROP-style network lists, the karma that
// verdicts of the real mail server's filters give a host, and the log
// followers that read those verdicts.
//
// The package only measures and remembers; it never decides a class. The
// classify Engine turns what this package reports into white, grey or
// black, so there is one place that owns every class change and its reason.
// Nothing here touches a client socket, and the DNS resolvers it uses are
// the ones the operator configured (never the system's, when a list is
// given), so tests run against an in-process server on loopback.
package reputation
