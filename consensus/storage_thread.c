/* storage_thread.c - see storage_thread.h. One mutex guards the queue and
 * the results; the thread never holds it while it writes or syncs. */
#include "consensus/storage_thread.h"
#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef enum {
    WRITE_READY,          /* a Ready's snapshot, entries, hard state */
    WRITE_APP_SNAPSHOT,   /* the application's snapshot, then compaction */
} write_kind_t;

typedef struct write {
    struct write *next;
    uint64_t seq;
    write_kind_t kind;
    bool has_snapshot;
    raft_snapshot_t snapshot;      /* data points into `payload` */
    raft_entry_t *entries;         /* data points into `payload` */
    size_t n_entries;
    bool has_hard_state;
    raft_hard_state_t hard_state;
    uint8_t *payload;              /* one buffer for every byte copied */
} write_t;

struct storage_thread {
    raftlog_t *log;
    storage_thread_hooks_t hooks;
    int event_fd;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* guarded by lock */
    write_t *head, *tail;
    bool stopping;
    uint64_t submitted;            /* last sequence number handed out */
    uint64_t durable;              /* last sequence number on disk */
    int error;                     /* first failure; nothing is written after it */
};

static void write_free(write_t *w)
{
    if (!w)
        return;
    free(w->entries);
    free(w->payload);
    free(w);
}

static void free_list(write_t *w)
{
    while (w) {
        write_t *next = w->next;
        write_free(w);
        w = next;
    }
}

/* --- the thread ---------------------------------------------------------- */

static int write_one(raftlog_t *log, const write_t *w)
{
    int rc = 0;
    if (w->kind == WRITE_APP_SNAPSHOT) {
        rc = raftlog_save_snapshot(log, &w->snapshot);
        return rc == 0 ? raftlog_compact(log, w->snapshot.index) : rc;
    }
    if (w->has_snapshot)
        rc = raftlog_install_snapshot(log, &w->snapshot);
    if (rc == 0 && w->n_entries)
        rc = raftlog_append(log, w->entries, w->n_entries);
    return rc;
}

/* Writes a group, syncs once, then writes the newest hard state (with its own
 * sync when term or vote moved), as raftlog_persist_ready() does for one. */
static int write_group(storage_thread_t *self, const write_t *group)
{
    const raft_hard_state_t *hard_state = NULL;
    size_t n = 0;
    int rc = 0;
    for (const write_t *w = group; w && rc == 0; w = w->next, n++) {
        rc = write_one(self->log, w);
        if (w->has_hard_state)
            hard_state = &w->hard_state;
    }
    if (rc != 0)
        return rc;
    if (self->hooks.before_sync)
        self->hooks.before_sync(self->hooks.ctx, n);
    rc = raftlog_sync(self->log);
    if (rc == 0 && hard_state)
        rc = raftlog_set_hard_state(self->log, hard_state);
    return rc;
}

static void signal_loop(storage_thread_t *self)
{
    uint64_t one = 1;
    /* Only fails if the counter would overflow, i.e. never in practice;
     * the loop reads the results under the lock anyway. */
    if (write(self->event_fd, &one, sizeof(one)) != sizeof(one))
        log_warn("raft", "cannot signal the storage completion: %s", strerror(errno));
}

static void *run(void *arg)
{
    storage_thread_t *self = arg;
    pthread_mutex_lock(&self->lock);
    for (;;) {
        while (!self->head && !self->stopping)
            pthread_cond_wait(&self->wake, &self->lock);
        if (!self->head)
            break;   /* stopping, and everything queued is written */
        write_t *group = self->head;
        uint64_t last = self->tail->seq;
        self->head = self->tail = NULL;
        bool failed = self->error != 0;
        pthread_mutex_unlock(&self->lock);

        int rc = failed ? 0 : write_group(self, group);
        free_list(group);

        pthread_mutex_lock(&self->lock);
        if (!failed) {
            if (rc == 0)
                self->durable = last;
            else
                self->error = rc;
            signal_loop(self);
        }
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

/* --- the loop's side ------------------------------------------------------- */

storage_thread_t *storage_thread_new(raftlog_t *log, const storage_thread_hooks_t *hooks)
{
    storage_thread_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->log = log;
    if (hooks)
        self->hooks = *hooks;
    self->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->event_fd < 0) {
        free(self);
        return NULL;
    }
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->wake, NULL);
    int rc = pthread_create(&self->thread, NULL, run, self);
    if (rc != 0) {
        close(self->event_fd);
        pthread_cond_destroy(&self->wake);
        pthread_mutex_destroy(&self->lock);
        free(self);
        errno = rc;
        return NULL;
    }
    return self;
}

void storage_thread_destroy(storage_thread_t **self_p)
{
    storage_thread_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock(&self->lock);
    self->stopping = true;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);
    pthread_join(self->thread, NULL);
    free_list(self->head);
    close(self->event_fd);
    pthread_cond_destroy(&self->wake);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

/* Hands `w` to the thread, which may write and free it as soon as the lock
 * is released: nothing of it is read after that. */
static void enqueue(storage_thread_t *self, write_t *w, uint64_t *seq)
{
    pthread_mutex_lock(&self->lock);
    uint64_t n = w->seq = ++self->submitted;
    if (self->tail)
        self->tail->next = w;
    else
        self->head = w;
    self->tail = w;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);
    if (seq)
        *seq = n;
}

/* Copies a snapshot's data to `*cursor` and advances it. */
static void copy_snapshot(raft_snapshot_t *to, const raft_snapshot_t *from, uint8_t **cursor)
{
    *to = *from;
    to->data = NULL;
    if (from->len) {
        memcpy(*cursor, from->data, from->len);
        to->data = *cursor;
        *cursor += from->len;
    }
}

int storage_thread_submit_ready(storage_thread_t *self, const raft_ready_t *rd, uint64_t *seq)
{
    write_t *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->kind = WRITE_READY;
    size_t bytes = rd->snapshot ? rd->snapshot->len : 0;
    for (size_t i = 0; i < rd->n_entries; i++)
        bytes += rd->entries[i].len;
    w->payload = malloc(bytes ? bytes : 1);
    w->entries = rd->n_entries ? malloc(rd->n_entries * sizeof(raft_entry_t)) : NULL;
    if (!w->payload || (rd->n_entries && !w->entries)) {
        write_free(w);
        return -ENOMEM;
    }
    uint8_t *cursor = w->payload;
    if (rd->snapshot) {
        w->has_snapshot = true;
        copy_snapshot(&w->snapshot, rd->snapshot, &cursor);
    }
    for (size_t i = 0; i < rd->n_entries; i++) {
        w->entries[i] = rd->entries[i];
        w->entries[i].data = NULL;
        if (rd->entries[i].len) {
            memcpy(cursor, rd->entries[i].data, rd->entries[i].len);
            w->entries[i].data = cursor;
            cursor += rd->entries[i].len;
        }
    }
    w->n_entries = rd->n_entries;
    w->has_hard_state = rd->has_hard_state;
    w->hard_state = rd->hard_state;
    enqueue(self, w, seq);
    return 0;
}

int storage_thread_submit_snapshot(storage_thread_t *self, const raft_snapshot_t *snap, uint64_t *seq)
{
    write_t *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->kind = WRITE_APP_SNAPSHOT;
    w->payload = malloc(snap->len ? snap->len : 1);
    if (!w->payload) {
        write_free(w);
        return -ENOMEM;
    }
    uint8_t *cursor = w->payload;
    copy_snapshot(&w->snapshot, snap, &cursor);
    enqueue(self, w, seq);
    return 0;
}

int storage_thread_fd(const storage_thread_t *self)
{
    return self->event_fd;
}

int storage_thread_collect(storage_thread_t *self, uint64_t *durable)
{
    uint64_t count;
    if (read(self->event_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        log_warn("raft", "cannot read the storage completion: %s", strerror(errno));
    pthread_mutex_lock(&self->lock);
    *durable = self->durable;
    int error = self->error;
    pthread_mutex_unlock(&self->lock);
    return error;
}
