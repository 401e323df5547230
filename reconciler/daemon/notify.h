/*
 * `certsync run` under systemd's Type=notify (docs/run.md, "systemd"):
 * readiness, status and watchdog through $NOTIFY_SOCKET (util/sdnotify.h).
 * Without NOTIFY_SOCKET every call does nothing visible.
 */
#ifndef CS_RECONCILER_DAEMON_NOTIFY_H
#define CS_RECONCILER_DAEMON_NOTIFY_H

#include <stdint.h>

struct daemon;

/* Before the loop: starts the watchdog thread when $WATCHDOG_USEC asks for pings. */
void daemon_notify_start(void);

/* The loop completed a pass (daemon_beat): the watchdog pings while the next one comes within bound_s. */
void daemon_notify_beat(int64_t bound_s);

/*
 * After each loop turn: the first sends READY=1 with STATUS= (a failed first
 * fetch still counts: the service is up, serves /healthz and retries); later
 * ones send STATUS= when the summary changed. The summary never holds a
 * secret (the fetch error is redacted).
 */
void daemon_notify_turn(const struct daemon *d);

/* Stops the watchdog thread and sends STOPPING=1. */
void daemon_notify_stop(void);

#endif
