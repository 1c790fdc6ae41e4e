/* Housekeeping the server does on its own: at start-up, on SIGHUP and once a minute it
 * removes partial uploads whose token expired (and, at start-up, partial files a crash left
 * without resumption state). Runs on the loop thread: it touches a handful of small files. */
#ifndef HU_MAINTENANCE_H
#define HU_MAINTENANCE_H

#include "server.h"

#define HU_MAINTENANCE_INTERVAL_MS 60000

void hu_maintenance_run(hu_server *srv, int at_startup);

#endif
