/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The kernel executor (executor.h, docs/architecture.md "The kernel executor"): jobs are
 * ucontext stacks on the loop's thread, the workers only run ioctl(2). A job goes to a worker's
 * queue and steps aside; the worker runs the ioctl, puts the job on the done list and writes the
 * eventfd; the loop resumes the job. Waiting for a claim works the same way without a worker.
 */

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "executor.h"
#include "log.h"

#if defined(__SANITIZE_ADDRESS__)
#  define EXECUTOR_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define EXECUTOR_ASAN 1
#  endif
#endif
#ifdef EXECUTOR_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/*
 * Switching between the loop and a job. glibc's swapcontext() saves and restores the signal mask
 * with a system call at every switch; jobs never change the mask, so on x86-64 a switch only swaps
 * the callee-saved registers, the stack pointer and the floating point control words (the
 * System V ABI's callee-saved state), as a function call would leave them. Elsewhere, and with
 * control-flow protection (a shadow stack would refuse the return into a new job): ucontext.
 */
#if defined(__x86_64__) && !defined(__CET__)
#  define EXECUTOR_FAST_SWITCH 1
/* Save the callee-saved state on the current stack, store the stack pointer in *save, continue on to. */
void executor_stack_switch(void **save, void *to);
__asm__(".text\n"
        ".p2align 4\n"
        ".globl executor_stack_switch\n"
        ".hidden executor_stack_switch\n"
        ".type executor_stack_switch, @function\n"
        "executor_stack_switch:\n"
        "        pushq %rbp\n"
        "        pushq %rbx\n"
        "        pushq %r12\n"
        "        pushq %r13\n"
        "        pushq %r14\n"
        "        pushq %r15\n"
        "        subq $8, %rsp\n"
        "        stmxcsr (%rsp)\n"
        "        fnstcw 4(%rsp)\n"
        "        movq %rsp, (%rdi)\n"
        "        movq %rsi, %rsp\n"
        "        ldmxcsr (%rsp)\n"
        "        fldcw 4(%rsp)\n"
        "        addq $8, %rsp\n"
        "        popq %r15\n"
        "        popq %r14\n"
        "        popq %r13\n"
        "        popq %r12\n"
        "        popq %rbx\n"
        "        popq %rbp\n"
        "        ret\n"
        ".size executor_stack_switch, .-executor_stack_switch\n"
        ".section .note.GNU-stack,\"\",@progbits\n"
        ".text\n");
#endif

/* Requests decode into a few KiB at most; the rest is headroom for libc and the sanitizers. */
#define JOB_STACK_SIZE (256U * 1024U)
#define JOB_STACKS_KEPT 64U
/* How long a job may run ioctls on the loop's thread (job_set_small()) before it steps aside. */
#define JOB_INLINE_USEC 250U

typedef struct JobEnd {
        void (*fn)(void *userdata);
        void *userdata;
        struct JobEnd *next;
} JobEnd;

struct Job {
        Executor *executor;
#ifdef EXECUTOR_FAST_SWITCH
        void *sp;               /* where its registers were saved when it stepped aside */
#else
        ucontext_t ctx;
#endif
        void *stack;
        JobFunc fn;
        JobDoneFunc done;
        void *userdata;
        int result;
        bool finished, waited, offload, small;
        uint64_t resumed_usec;  /* when it last got the loop (CLOCK_MONOTONIC) */

        /* The ioctl a worker runs for it. */
        int fd;
        unsigned long request;
        void *arg;
        int ioctl_result, ioctl_errno;
        bool ioctl_big;         /* counted in Executor.n_big */

        Job *next;              /* the workers' queue, the done list or the runnable list */
        JobClaim *claims;       /* held */
        JobClaim *kept_claims;  /* held, and kept by job_wait() (job_claim_keep()) */
        JobClaim *waiting_for;  /* met by job_claim() */
        /* Jobs waiting for one of its claims, in the order they came; one job waits for one claim. */
        Job *waiters_head, *waiters_tail;
        Job *wait_next;         /* on the holder's waiters */
        JobClaim *queued_on;    /* the claim it waits for there */
        JobEnd *ends;
        void *owner;
#ifdef EXECUTOR_ASAN
        void *fake_stack;
#endif
};

struct Executor {
        sd_event_source *event_source;
        int efd;
        pthread_t *threads;
        unsigned n_threads;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        Job *queue_head, *queue_tail;   /* ioctls for the workers */
        Job *done_head, *done_tail;     /* their ioctl is done */
        bool stop;

        /* The loop's thread only. */
        Job *runnable_head, *runnable_tail;
        Job loop_holder;                /* holds claims for the loop (executor_claim_hold()); never runs */
#ifdef EXECUTOR_FAST_SWITCH
        void *loop_sp;
#else
        ucontext_t loop_ctx;
#endif
        int event_fd;                   /* the sd-event loop's epoll fd: does anything else wait? */
        uint64_t n_inline, n_offloaded; /* KFD ioctls run on the loop's thread, by a worker */
        unsigned n_jobs;
        unsigned n_ioctls;              /* handed to the workers and not resumed yet */
        unsigned n_big;                 /* … of them, those of jobs not marked small */
        void *stacks[JOB_STACKS_KEPT];
        unsigned n_stacks;
        void (*idle)(void *userdata);
        void *idle_userdata;
#ifdef EXECUTOR_ASAN
        const void *loop_stack_bottom;
        size_t loop_stack_size;
#endif
};

static Job *current;

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

static void list_push(Job **head, Job **tail, Job *j) {
        j->next = NULL;
        if (*tail)
                (*tail)->next = j;
        else
                *head = j;
        *tail = j;
}

static Job *list_pop(Job **head, Job **tail) {
        Job *j = *head;

        if (j) {
                *head = j->next;
                if (!*head)
                        *tail = NULL;
                j->next = NULL;
        }
        return j;
}

/* ---- workers ---- */

static void *worker_main(void *userdata) {
        Executor *x = userdata;

        for (;;) {
                bool was_empty;
                Job *j;

                pthread_mutex_lock(&x->lock);
                while (!x->stop && !x->queue_head)
                        pthread_cond_wait(&x->cond, &x->lock);
                j = list_pop(&x->queue_head, &x->queue_tail);
                pthread_mutex_unlock(&x->lock);
                if (!j)
                        return NULL; /* stopping, and nothing left */

                /* The restarts of EINTR stay with the caller (kfd/kfd-ioctl.c): one call here. */
                j->ioctl_result = ioctl(j->fd, j->request, j->arg);
                j->ioctl_errno = j->ioctl_result < 0 ? errno : 0;

                pthread_mutex_lock(&x->lock);
                was_empty = !x->done_head;
                list_push(&x->done_head, &x->done_tail, j);
                pthread_mutex_unlock(&x->lock);
                /* The loop takes the whole list after reading the eventfd: one wakeup per batch. */
                if (was_empty)
                        (void) eventfd_write(x->efd, 1);
        }
}

/* ---- switching ---- */

static void job_switch_to_loop(Job *j) {
#ifdef EXECUTOR_ASAN
        Executor *x = j->executor;
        __sanitizer_start_switch_fiber(j->finished ? NULL : &j->fake_stack, x->loop_stack_bottom, x->loop_stack_size);
#endif
        current = NULL;
#ifdef EXECUTOR_FAST_SWITCH
        executor_stack_switch(&j->sp, j->executor->loop_sp);
#else
        (void) swapcontext(&j->ctx, &j->executor->loop_ctx);
#endif
#ifdef EXECUTOR_ASAN
        __sanitizer_finish_switch_fiber(j->fake_stack, &j->executor->loop_stack_bottom, &j->executor->loop_stack_size);
#endif
}

/* The jobs waiting for c, held by holder, start over in the order they came. */
static void claim_wake_waiters(Job *holder, JobClaim *c) {
        Job *prev = NULL, *w, *next;

        for (w = holder->waiters_head; w; w = next) {
                next = w->wait_next;
                if (w->queued_on != c) {
                        prev = w;
                        continue;
                }
                if (prev)
                        prev->wait_next = next;
                else
                        holder->waiters_head = next;
                if (holder->waiters_tail == w)
                        holder->waiters_tail = prev;
                w->wait_next = NULL;
                w->queued_on = NULL;
                if (w->waiting_for == c)
                        w->waiting_for = NULL;
                list_push(&w->executor->runnable_head, &w->executor->runnable_tail, w);
        }
}

static void claim_release(Job *holder, JobClaim *c) {
        c->job_next = NULL;
        c->job = NULL;
        if (holder->waiters_head)
                claim_wake_waiters(holder, c);
}

static void job_release_claims(Job *j, bool all) {
        while (j->claims) {
                JobClaim *c = j->claims;

                j->claims = c->job_next;
                claim_release(j, c);
        }
        while (all && j->kept_claims) {
                JobClaim *c = j->kept_claims;

                j->kept_claims = c->job_next;
                claim_release(j, c);
        }
}

static void job_entry(void) {
        Job *j = current;

#ifdef EXECUTOR_ASAN
        __sanitizer_finish_switch_fiber(NULL, &j->executor->loop_stack_bottom, &j->executor->loop_stack_size);
#endif
        j->result = j->fn(j->userdata);
        job_release_claims(j, true);
        j->finished = true;
        job_switch_to_loop(j);
        abort(); /* a finished job is never resumed */
}

static void job_destroy(Job *j) {
        Executor *x = j->executor;

        while (j->ends) {
                JobEnd *e = j->ends;

                j->ends = e->next;
                e->fn(e->userdata);
                free(e);
        }
        if (x->n_stacks < JOB_STACKS_KEPT)
                x->stacks[x->n_stacks++] = j->stack;
        else
                (void) munmap(j->stack, JOB_STACK_SIZE);
        free(j);
        assert(x->n_jobs > 0);
        x->n_jobs--;
}

/* Run j until it waits or ends; an ended job that waited reports to its done callback. */
static void job_resume(Job *j) {
        Executor *x = j->executor;

        assert(!current);
        current = j;
        j->resumed_usec = now_usec();
#ifdef EXECUTOR_ASAN
        void *fake = NULL;
        __sanitizer_start_switch_fiber(&fake, j->stack, JOB_STACK_SIZE);
#endif
#ifdef EXECUTOR_FAST_SWITCH
        executor_stack_switch(&x->loop_sp, j->sp);
#else
        (void) swapcontext(&x->loop_ctx, &j->ctx);
#endif
#ifdef EXECUTOR_ASAN
        __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
        current = NULL;
}

static void job_finish(Job *j) {
        Executor *x = j->executor;

        if (j->done)
                j->done(j->userdata, j->result);
        job_destroy(j);
        if (x->n_jobs == 0 && x->idle)
                x->idle(x->idle_userdata);
}

/* Resume the woken waiters (they start over), until none is left. */
static void run_runnable(Executor *x) {
        Job *j;

        while ((j = list_pop(&x->runnable_head, &x->runnable_tail))) {
                job_resume(j);
                if (j->finished)
                        job_finish(j);
        }
}

static void process_done(Executor *x) {
        Job *head, *j;

        pthread_mutex_lock(&x->lock);
        head = x->done_head;
        x->done_head = x->done_tail = NULL;
        pthread_mutex_unlock(&x->lock);

        while ((j = head)) {
                head = j->next;
                j->next = NULL;
                assert(x->n_ioctls > 0);
                x->n_ioctls--;
                if (j->ioctl_big) {
                        x->n_big--;
                        j->ioctl_big = false;
                }
                job_resume(j);
                if (j->finished)
                        job_finish(j);
                run_runnable(x);
        }
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Executor *x = userdata;
        eventfd_t v;

        (void) eventfd_read(x->efd, &v);
        process_done(x);
        return 0;
}

/* ---- public ---- */

int executor_new(Executor **ret, sd_event *e, unsigned n_threads) {
        _cleanup_(executor_freep) Executor *x = NULL;
        sigset_t all, old;
        int r;

        x = calloc(1, sizeof(Executor));
        if (!x)
                return -ENOMEM;
        x->efd = x->event_fd = -EBADF;
        pthread_mutex_init(&x->lock, NULL);
        pthread_cond_init(&x->cond, NULL);

        x->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (x->efd < 0)
                return negative_errno();
        r = sd_event_add_io(e, &x->event_source, x->efd, EPOLLIN, on_done, x);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(x->event_source, "executor");
        x->event_fd = sd_event_get_fd(e);

        x->threads = calloc(MAX(n_threads, 1U), sizeof(pthread_t));
        if (!x->threads)
                return -ENOMEM;
        /* Signals are the loop's (signalfd): the workers inherit a mask that blocks them all. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        for (unsigned i = 0; i < MAX(n_threads, 1U); i++) {
                r = -pthread_create(&x->threads[i], NULL, worker_main, x);
                if (r < 0)
                        break;
                x->n_threads++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(x);
        return 0;
}

void executor_drain(Executor *x) {
        while (x->n_jobs > 0) {
                eventfd_t v;
                struct pollfd p = { .fd = x->efd, .events = POLLIN };

                run_runnable(x);
                if (x->n_jobs == 0)
                        break;
                (void) poll(&p, 1, -1);
                (void) eventfd_read(x->efd, &v);
                process_done(x);
        }
}

Executor *executor_free(Executor *x) {
        if (!x)
                return NULL;
        if (x->n_threads > 0)
                executor_drain(x);
        pthread_mutex_lock(&x->lock);
        x->stop = true;
        pthread_cond_broadcast(&x->cond);
        pthread_mutex_unlock(&x->lock);
        for (unsigned i = 0; i < x->n_threads; i++)
                pthread_join(x->threads[i], NULL);
        free(x->threads);
        for (unsigned i = 0; i < x->n_stacks; i++)
                (void) munmap(x->stacks[i], JOB_STACK_SIZE);
        sd_event_source_disable_unref(x->event_source);
        safe_close(x->efd);
        pthread_cond_destroy(&x->cond);
        pthread_mutex_destroy(&x->lock);
        free(x);
        return NULL;
}

int executor_spawn(Executor *x, JobFunc fn, JobDoneFunc done, void *userdata) {
        Job *j;
        int r;

        assert(!current);
        j = calloc(1, sizeof(Job));
        if (!j)
                return -ENOMEM;
        *j = (Job) { .executor = x, .fn = fn, .done = done, .userdata = userdata };
        if (x->n_stacks > 0)
                j->stack = x->stacks[--x->n_stacks];
        else {
                j->stack = mmap(NULL, JOB_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                                -1, 0);
                if (j->stack == MAP_FAILED) {
                        free(j);
                        return -ENOMEM;
                }
                /* A guard page: a job that overruns its stack faults instead of writing over the next. */
                (void) mprotect(j->stack, 4096, PROT_NONE);
        }
#ifdef EXECUTOR_ASAN
        /* A kept stack still has the poisoned frames of the job that ended on it. */
        ASAN_UNPOISON_MEMORY_REGION((uint8_t *) j->stack + 4096, JOB_STACK_SIZE - 4096);
#endif
#ifdef EXECUTOR_FAST_SWITCH
        {
                /* What executor_stack_switch() pops, from the top of the stack down: an empty slot
                 * (job_entry() is entered as if called, and never returns), the return address into
                 * job_entry(), rbp rbx r12–r15 zero, the default MXCSR and x87 control word. */
                uint64_t *top = (uint64_t *) ((uint8_t *) j->stack + JOB_STACK_SIZE);
                uint64_t *sp = top - 9;
                uint32_t mxcsr = 0x1F80;
                uint16_t fpucw = 0x037F;

                memset(sp, 0, 9 * sizeof(uint64_t));
                memcpy(sp, &mxcsr, sizeof(mxcsr));
                memcpy((uint8_t *) sp + 4, &fpucw, sizeof(fpucw));
                sp[7] = (uint64_t) (uintptr_t) job_entry;
                j->sp = sp;
        }
#else
        if (getcontext(&j->ctx) < 0) {
                r = negative_errno();
                (void) munmap(j->stack, JOB_STACK_SIZE);
                free(j);
                return r;
        }
        j->ctx.uc_stack.ss_sp = j->stack;
        j->ctx.uc_stack.ss_size = JOB_STACK_SIZE;
        j->ctx.uc_link = NULL;
        makecontext(&j->ctx, job_entry, 0);
#endif
        x->n_jobs++;

        job_resume(j);
        if (j->finished && !j->waited) {
                r = j->result;
                job_destroy(j);
                run_runnable(x);
                if (x->n_jobs == 0 && x->idle)
                        x->idle(x->idle_userdata);
                return r;
        }
        if (j->finished)
                job_finish(j);
        run_runnable(x);
        return -EINPROGRESS;
}

unsigned executor_n_jobs(const Executor *x) {
        return x ? x->n_jobs : 0;
}

void executor_get_ioctl_counts(const Executor *x, uint64_t *ret_inline, uint64_t *ret_offloaded) {
        *ret_inline = x ? x->n_inline : 0;
        *ret_offloaded = x ? x->n_offloaded : 0;
}

void executor_set_idle_callback(Executor *x, void (*fn)(void *userdata), void *userdata) {
        x->idle = fn;
        x->idle_userdata = userdata;
}

Job *job_current(void) {
        return current;
}

static bool swap_bool(bool *flag, bool value) {
        bool old = *flag;

        *flag = value;
        return old;
}

bool job_set_small(bool small) {
        return current ? swap_bool(&current->small, small) : false;
}

bool job_set_offload(bool on) {
        return current ? swap_bool(&current->offload, on) : false;
}

void job_set_owner(void *owner) {
        if (current)
                current->owner = owner;
}

void *job_get_owner(void) {
        return current ? current->owner : NULL;
}

int job_on_end(void (*fn)(void *userdata), void *userdata) {
        JobEnd *e;

        if (!current)
                return -ENOENT;
        e = malloc(sizeof(JobEnd));
        if (!e)
                return -ENOMEM;
        *e = (JobEnd) { .fn = fn, .userdata = userdata, .next = current->ends };
        current->ends = e;
        return 0;
}

static int claim_take(JobClaim *c, JobClaim **list) {
        Job *j = current;

        if (!j || c->job == j)
                return 0;
        if (c->job) {
                j->waiting_for = c;
                return JOB_RETRY;
        }
        c->job = j;
        c->job_next = *list;
        *list = c;
        return 0;
}

int job_claim(JobClaim *c) {
        return claim_take(c, current ? &current->claims : NULL);
}

int job_claim_keep(JobClaim *c) {
        return claim_take(c, current ? &current->kept_claims : NULL);
}

int job_claim_check(JobClaim *c) {
        Job *j = current;

        if (!j || !c->job || c->job == j)
                return 0;
        j->waiting_for = c;
        return JOB_RETRY;
}

bool job_claim_held(const JobClaim *c) {
        return c->job && c->job != current;
}

static bool claim_unlink(JobClaim **list, JobClaim *c) {
        for (JobClaim **p = list; *p; p = &(*p)->job_next)
                if (*p == c) {
                        *p = c->job_next;
                        return true;
                }
        return false;
}

void job_claim_drop(JobClaim *c) {
        Job *holder = c->job;

        /* A free claim has nobody waiting: waiters queue only on a held one (job_wait()). Waiters
         * that met c and have not queued yet (job_wait() not called) wait for nothing. */
        if (!holder)
                return;
        if (!claim_unlink(&holder->claims, c))
                (void) claim_unlink(&holder->kept_claims, c);
        claim_release(holder, c);
}

void job_wait(void) {
        Job *j = current, *holder;
        JobClaim *c;

        assert(j);
        c = TAKE_PTR(j->waiting_for);
        /* It starts over: what it claimed so far (validation only) goes first, so two jobs that
         * claim in different orders cannot wait for each other. */
        job_release_claims(j, false);
        if (!c || !c->job)
                return; /* released meanwhile */
        holder = c->job;
        j->wait_next = NULL;
        j->queued_on = c;
        if (holder->waiters_tail)
                holder->waiters_tail->wait_next = j;
        else
                holder->waiters_head = j;
        holder->waiters_tail = j;
        j->waited = true;
        job_switch_to_loop(j);
}

void executor_claim_hold(Executor *x, JobClaim *c) {
        assert(!c->job);
        c->job = &x->loop_holder;
        c->job_next = x->loop_holder.claims;
        x->loop_holder.claims = c;
}

void executor_claim_release(Executor *x, JobClaim *c) {
        assert(c->job == &x->loop_holder);
        job_claim_drop(c);
        if (!current)
                run_runnable(x);
}

void job_maybe_yield(void) {
        Job *j = current;
        Executor *x;

        if (!j || now_usec() - j->resumed_usec < EXECUTOR_SLICE_USEC)
                return;
        /* As if an ioctl had ended at once: the done list, behind what the loop has waiting. */
        x = j->executor;
        x->n_ioctls++;
        j->waited = true;
        pthread_mutex_lock(&x->lock);
        list_push(&x->done_head, &x->done_tail, j);
        pthread_mutex_unlock(&x->lock);
        (void) eventfd_write(x->efd, 1);
        job_switch_to_loop(j);
}

/*
 * Whether anything but the current job waits for the loop (docs/architecture.md, "The kernel
 * executor"): another job alive (its ioctl in flight, or woken and runnable), or an event source
 * of the loop ready: sd-event's epoll fd is readable when one is (a message on the bus connection,
 * a direct peer's new data, a worker's eventfd, a timer). One poll(2) with timeout 0.
 */
static bool executor_others_wait(Executor *x) {
        struct pollfd p = { .fd = x->event_fd, .events = POLLIN };

        if (x->n_jobs > 1 || x->runnable_head)
                return true;
        return x->event_fd >= 0 && poll(&p, 1, 0) > 0;
}

int executor_ioctl(int fd, unsigned long request, void *arg) {
        Job *j = current;
        Executor *x;

        if (!j || !j->offload)
                return ioctl(fd, request, arg);
        x = j->executor;
        /* Small, nothing large in the kernel (which might hold its process lock for long), this
         * dispatch still short, and nobody else waits for the loop while the kernel sleeps: here. */
        if (j->small && x->n_big == 0 && now_usec() - j->resumed_usec < JOB_INLINE_USEC &&
            !executor_others_wait(x)) {
                x->n_inline++;
                return ioctl(fd, request, arg);
        }

        x->n_offloaded++;
        x->n_ioctls++;
        j->ioctl_big = !j->small;
        x->n_big += j->ioctl_big;
        j->fd = fd;
        j->request = request;
        j->arg = arg;
        j->waited = true;
        pthread_mutex_lock(&x->lock);
        list_push(&x->queue_head, &x->queue_tail, j);
        pthread_cond_signal(&x->cond);
        pthread_mutex_unlock(&x->lock);

        job_switch_to_loop(j);

        errno = j->ioctl_errno;
        return j->ioctl_result;
}
