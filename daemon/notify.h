// systemd's readiness protocol (sd_notify) without libsystemd: one datagram
// per message to $NOTIFY_SOCKET ("READY=1", "STATUS=...", "WATCHDOG=1",
// "STOPPING=1"), and gridd's watchdog and status timers.
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

// Under systemd (NOTIFY_SOCKET set), once gridd listens: sends READY=1
// with a STATUS= line (what `systemctl status gridd` shows: addresses, jobs,
// worker connections) and starts two timers on loop, whose data is the
// server: STATUS= again whenever it changes (checked every NOTIFY_STATUS_MS),
// and WATCHDOG=1 every half of notify_watchdog_usec() when a watchdog is
// asked for. Returns the number of timers started (0: not under systemd).
// Their data is loop->data, so gridd's shutdown walk closes them with the
// server's own handles.
#define NOTIFY_STATUS_MS 1000
int notify_ready(uv_loop_t *loop);

#endif
