/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-event.h>
#include <systemd/sd-id128.h>

#include "client.h"
#include "direct.h"
#include "log.h"
#include "manager.h"

typedef struct Peer Peer;

struct Peer {
        DirectServer *server;
        sd_bus *bus;
        Peer *prev, *next;
};

struct DirectServer {
        Manager *manager;
        char *path;
        int fd;
        sd_event_source *source;
        Peer *peers;
        unsigned n_peers;
};

static Peer *peer_free(Peer *p) {
        if (!p)
                return NULL;
        if (p->prev)
                p->prev->next = p->next;
        else if (p->server)
                p->server->peers = p->next;
        if (p->next)
                p->next->prev = p->prev;
        if (p->server) {
                p->server->n_peers--;
                manager_direct_peer_closed(p->server->manager, p->bus);
        }
        sd_bus_flush_close_unref(p->bus);
        free(p);
        return NULL;
}

static int on_peer_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Peer *p = userdata;

        log_debug("Direct peer disconnected.");
        peer_free(p);
        return 0;
}

static int on_accept(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        DirectServer *s = userdata;
        _cleanup_close_ int cfd = -EBADF;
        _cleanup_free_ Peer *p = NULL;
        sd_id128_t id;
        int r;

        cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0) {
                if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                        return 0;
                log_warning_errno(errno, "Accepting a direct connection failed, ignoring: %m");
                return 0;
        }

        p = calloc(1, sizeof(Peer));
        if (!p)
                return log_error_errno(ENOMEM, "Out of memory.");
        p->server = s;

        r = sd_bus_new(&p->bus);
        if (r < 0)
                return log_error_errno(r, "Creating a bus object for a direct peer failed: %m");
        r = sd_bus_set_fd(p->bus, cfd, cfd);
        if (r < 0)
                goto fail;
        cfd = -EBADF; /* the bus owns it now */

        r = sd_id128_randomize(&id);
        if (r < 0)
                goto fail;
        r = sd_bus_set_server(p->bus, 1, id);
        if (r < 0)
                goto fail;
        /* File descriptors travel on the direct connection (Export, Attach). */
        r = sd_bus_negotiate_fds(p->bus, 1);
        if (r < 0)
                goto fail;

        r = manager_add_bus_objects(s->manager, p->bus);
        if (r < 0)
                goto fail;
        r = sd_bus_match_signal(p->bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                "org.freedesktop.DBus.Local", "Disconnected", on_peer_disconnected, p);
        if (r < 0)
                goto fail;
        r = sd_bus_attach_event(p->bus, s->manager->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                goto fail;
        r = sd_bus_start(p->bus);
        if (r < 0)
                goto fail;

        p->next = s->peers;
        if (s->peers)
                s->peers->prev = p;
        s->peers = p;
        s->n_peers++;
        TAKE_PTR(p);
        log_debug("Direct peer connected.");
        return 0;

fail:
        log_warning_errno(r, "Setting up a direct connection failed, dropping it: %m");
        p->server = NULL;
        sd_bus_flush_close_unref(p->bus);
        p->bus = NULL;
        return 0;
}

int direct_server_new(DirectServer **ret, Manager *m, const char *path) {
        _cleanup_free_ DirectServer *s = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(ENAMETOOLONG, "Socket path %s is too long.", path);
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(errno, "Creating the direct socket failed: %m");

        /* A stale socket from an earlier run would make bind() fail. */
        (void) unlink(path);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return log_error_errno(errno, "Binding %s failed: %m", path);
        /* Anyone may connect; every method authorizes the caller itself. */
        if (chmod(path, 0666) < 0)
                return log_error_errno(errno, "Setting the mode of %s failed: %m", path);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "Listening on %s failed: %m", path);

        s = calloc(1, sizeof(DirectServer));
        if (!s)
                return -ENOMEM;
        s->manager = m;
        s->fd = -EBADF;
        s->path = strdup(path);
        if (!s->path)
                return -ENOMEM;

        r = sd_event_add_io(m->event, &s->source, fd, EPOLLIN, on_accept, s);
        if (r < 0) {
                free(s->path);
                return log_error_errno(r, "Watching %s failed: %m", path);
        }
        s->fd = TAKE_FD(fd);

        *ret = TAKE_PTR(s);
        return 0;
}

DirectServer *direct_server_free(DirectServer *s) {
        if (!s)
                return NULL;
        while (s->peers)
                peer_free(s->peers);
        sd_event_source_disable_unref(s->source);
        safe_close(s->fd);
        if (s->path)
                (void) unlink(s->path);
        free(s->path);
        free(s);
        return NULL;
}

unsigned direct_server_n_peers(const DirectServer *s) {
        return s ? s->n_peers : 0;
}
