// Package health runs the health checks of the services an agent owns:
// HTTP, TCP, gRPC and script checks on an interval, and TTL checks whose
// status the application reports itself. Definitions use Consul's JSON
// shapes (ParseCheckDefinition), and results follow Consul's rules, so a
// check that works under a Consul agent works here unchanged.
//
// Checks holds an agent's checks. It starts each check after a random
// delay of up to its Interval (so a thousand checks registered at once do
// not fire together), runs it with a Timeout, keeps at most 4 KiB of
// output, applies SuccessBeforePassing, FailuresBeforeWarning and
// FailuresBeforeCritical, and reports changes through Config.OnUpdate for
// the agent's anti-entropy to push to the catalog. Services whose check
// has been critical longer than DeregisterCriticalServiceAfter are
// reported through Config.OnDeregister.
//
// It is not the catalog: it does not know services, does not talk to the
// servers, and does not aggregate a service's checks into one status.
// Nor is it the sidecar's outlier detection, which judges upstream
// instances from live traffic.
//
// # Behaviour worth knowing
//
//   - Status mapping. HTTP: 2xx passing, 429 warning, anything else or
//     no response critical. TCP: connection accepted is passing. gRPC
//     (grpc.health.v1): SERVING passing, anything else critical. Script:
//     exit 0 passing, 1 warning, anything else critical.
//   - Minimums. An Interval below 1s is raised to 1s and a
//     DeregisterCriticalServiceAfter below 1 minute is raised to 1
//     minute when the check is added, with a warning logged. That is
//     Consul's behaviour, so registrations that Consul accepts are
//     accepted here; CheckState.Definition shows the values in effect.
//   - Thresholds count from registration: a new check keeps its initial
//     Status (critical unless given) until SuccessBeforePassing results in
//     a row say otherwise. (Consul applies the very first result at once
//     whatever the thresholds; here the threshold means what it says.)
//   - Runs of one check never overlap: the next run is scheduled Interval
//     after the previous one finished.
//   - Script checks are refused unless Config.EnableScriptChecks is set
//     (Consul's enable_script_checks): a script check registered over the
//     HTTP API runs any command as the agent's user. On timeout the whole
//     process group is killed, not just the first process.
//   - Re-adding an ID replaces the check. Unless the new definition gives
//     a Status, the current status and output carry over, so a deploy tool
//     that re-applies an unchanged registration does not flap the service
//     to critical.
package health
