// systemd's readiness protocol (sd_notify) without libsystemd: one datagram
// per message to $NOTIFY_SOCKET ("READY=1", "STATUS=...", "WATCHDOG=1",
// "STOPPING=1"), and the watchdog keep-alive timer on gridd's loop.
#ifndef HGRID_DAEMON_NOTIFY_H
#define HGRID_DAEMON_NOTIFY_H

#include <stdint.h>
#include <uv.h>

// Sends one message (lines "KEY=value", printf format) to $NOTIFY_SOCKET: a
// path, or an abstract name written "@name". Returns 0 when sent or when
// NOTIFY_SOCKET is unset (not under systemd), -1 when it could not be sent
// (said on stderr once).
int notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// The watchdog interval systemd asks of this process, in microseconds:
// $WATCHDOG_USEC when $WATCHDOG_PID is unset or names this process; else 0.
uint64_t notify_watchdog_usec(void);

// Sends WATCHDOG=1 from a timer on loop every half of notify_watchdog_usec();
// returns 1 if started, 0 if no watchdog is asked for. The timer's data is
// loop->data, so gridd's shutdown walk closes it with the server's handles.
int notify_watchdog_start(uv_loop_t *loop);

#endif
