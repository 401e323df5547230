/*
 * systemd's service notification protocol (sd_notify(3)) without libsystemd:
 * one datagram of "KEY=value\n" lines to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). Outside
 * systemd (no NOTIFY_SOCKET) every call is a no-op returning 0.
 */
#ifndef CS_UTIL_SDNOTIFY_H
#define CS_UTIL_SDNOTIFY_H

#include <stdint.h>

/*
 * Sends msg ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET. 0 when sent or when
 * there is no socket; CS_EINVALID for a socket path that does not fit
 * sockaddr_un; CS_ERROR when the send failed (errno text in the message).
 * Never blocks (MSG_DONTWAIT) and is safe from any thread.
 */
int sdnotify_send(const char *msg);

/*
 * The watchdog interval the service manager asked for, in microseconds:
 * $WATCHDOG_USEC when it is a positive number and $WATCHDOG_PID is unset or
 * this process; else 0 (no watchdog). Pings go out at half this interval.
 */
uint64_t sdnotify_watchdog_usec(void);

#endif
