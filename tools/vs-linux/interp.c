/*
 * The operation language (src/script/lang.rs) run on Linux, for differential
 * testing: every statement is performed with the real system calls and its
 * observable result printed in the form the kernel prints with
 * script:observe=1 (src/script/observe.rs), so scripts/vs-linux.py can
 * compare the two line by line.
 *
 *   interp FILE...      each file a script; output between DIFF-BEGIN/DIFF-END
 *
 * Runs as root in the initramfs of tools/vs-linux/init.sh (pagemap PFNs and
 * kpageflags need it). A task is a process; the driver (this process) sends
 * each operation to the task's process over a pipe and reads back one line.
 *
 * Our own code; the language and the output form are the project's.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PROT_MTE
#define PROT_MTE 0x20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef PR_SET_TAGGED_ADDR_CTRL
#define PR_SET_TAGGED_ADDR_CTRL 55
#define PR_TAGGED_ADDR_ENABLE (1UL << 0)
#endif
#ifndef PR_MTE_TCF_SYNC
#define PR_MTE_TCF_SYNC (1UL << 1)
#define PR_MTE_TAG_SHIFT 3
#endif
#ifndef SEGV_MTEAERR
#define SEGV_MTEAERR 8
#define SEGV_MTESERR 9
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#define _UFFDIO_MOVE 0x05
struct uffdio_move {
	uint64_t dst, src, len, mode;
	int64_t move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

#define PAGE 4096UL
#define HUGE (2UL << 20)
#define FIRST_ADDR 0x10000000UL
#define MAXT 16
#define MAXR 64
#define LINE 4096

/* ------------------------------------------------------------ the script */

enum kind { K_TASK, K_SWAPON, K_SWAPOFF, K_SWAPCACHE, K_THP, K_OP };

struct stmt {
	int line, cpu; /* cpu -1: the caller's */
	enum kind kind;
	char task[32];
	char text[256]; /* the operation, without "TASK:" and "=> ..." */
	char expect[32]; /* after "=>", or "" */
	char arg[32];    /* task name, thp mode, swapcache mode */
};

struct range {
	char name[32];
	uint64_t base;
	unsigned pages;
	int mte; /* the mapping's PROT_MTE, as the script asked for it */
};

struct task {
	char name[32];
	int live;
	pid_t pid;
	int cmd[2], resp[2];
	struct range r[MAXR];
	int nr;
};

static struct task tasks[MAXT];
static int ntasks;
static uint64_t next_addr;
static char names[MAXT][32];
static int nnames;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	exit(2);
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

/* Whitespace runs collapsed to one space. */
static void squeeze(char *s)
{
	char *o = s;
	int sp = 0;
	for (char *p = s; *p; p++) {
		if (isspace((unsigned char)*p)) {
			sp = 1;
			continue;
		}
		if (sp && o != s)
			*o++ = ' ';
		sp = 0;
		*o++ = *p;
	}
	*o = 0;
}

static int parse(const char *file, struct stmt *out, int max)
{
	FILE *f = fopen(file, "r");
	if (!f)
		die("ERROR %s: %s", file, strerror(errno));
	char buf[LINE];
	int n = 0, lineno = 0, cpu = -1;
	while (fgets(buf, sizeof buf, f)) {
		lineno++;
		char *h = strchr(buf, '#');
		if (h)
			*h = 0;
		char *s = trim(buf);
		squeeze(s);
		if (!*s)
			continue;
		if (!strncmp(s, "on cpu ", 7)) {
			cpu = atoi(s + 7);
			continue;
		}
		if (!strcmp(s, "}")) {
			cpu = -1;
			continue;
		}
		if (n == max)
			die("ERROR %s: more than %d statements", file, max);
		struct stmt *st = &out[n++];
		memset(st, 0, sizeof *st);
		st->line = lineno;
		st->cpu = cpu;
		char *colon = strchr(s, ':');
		char *sp = strchr(s, ' ');
		if (colon && (!sp || colon < sp)) {
			st->kind = K_OP;
			*colon = 0;
			snprintf(st->task, sizeof st->task, "%s", s);
			char *body = trim(colon + 1);
			char *arrow = strstr(body, "=>");
			if (arrow) {
				*arrow = 0;
				snprintf(st->expect, sizeof st->expect, "%s", trim(arrow + 2));
			}
			snprintf(st->text, sizeof st->text, "%s", trim(body));
		} else if (!strncmp(s, "task ", 5)) {
			st->kind = K_TASK;
			snprintf(st->arg, sizeof st->arg, "%s", s + 5);
		} else if (!strcmp(s, "swapon")) {
			st->kind = K_SWAPON;
		} else if (!strcmp(s, "swapoff")) {
			st->kind = K_SWAPOFF;
		} else if (!strncmp(s, "swapcache ", 10)) {
			st->kind = K_SWAPCACHE;
			snprintf(st->arg, sizeof st->arg, "%s", s + 10);
		} else if (!strncmp(s, "thp ", 4)) {
			st->kind = K_THP;
			snprintf(st->arg, sizeof st->arg, "%s", s + 4);
		} else {
			die("ERROR %s:%d: '%s' starts no statement", file, lineno, s);
		}
	}
	fclose(f);
	return n;
}

/* A selector: RANGE, RANGE[N], RANGE[A..], RANGE[A..B]. */
struct sel {
	char range[32];
	unsigned first, count; /* count 0: to the end */
};

static int parse_sel(const char *s, struct sel *o)
{
	memset(o, 0, sizeof *o);
	const char *b = strchr(s, '[');
	if (!b) {
		snprintf(o->range, sizeof o->range, "%s", s);
		return 0;
	}
	snprintf(o->range, sizeof o->range, "%.*s", (int)(b - s), s);
	unsigned a, e;
	if (sscanf(b, "[%u..%u]", &a, &e) == 2) {
		if (e <= a)
			return -1;
		o->first = a;
		o->count = e - a;
	} else if (sscanf(b, "[%u..]", &a) == 1 && strstr(b, "..]")) {
		o->first = a;
	} else if (sscanf(b, "[%u]", &a) == 1) {
		o->first = a;
		o->count = 1;
	} else {
		return -1;
	}
	return 0;
}

static struct task *task_of(const char *name)
{
	for (int i = 0; i < ntasks; i++)
		if (tasks[i].live && !strcmp(tasks[i].name, name))
			return &tasks[i];
	return NULL;
}

static struct range *range_of(struct task *t, const char *name)
{
	for (int i = 0; i < t->nr; i++)
		if (!strcmp(t->r[i].name, name))
			return &t->r[i];
	return NULL;
}

/* The pages a selector names, as the model resolves them; NULL on a
 * script error (written to err). */
static struct range *resolve(struct task *t, struct sel *s, uint64_t *addr, unsigned *count, char *err)
{
	struct range *r = range_of(t, s->range);
	if (!r) {
		sprintf(err, "task %s has no range '%s'", t->name, s->range);
		return NULL;
	}
	unsigned c = s->count ? s->count : (r->pages > s->first ? r->pages - s->first : 0);
	if (s->first >= r->pages || s->first + c > r->pages || c == 0) {
		sprintf(err, "a selector is outside range '%s' of %u pages", r->name, r->pages);
		return NULL;
	}
	*addr = r->base + s->first * PAGE;
	*count = c;
	return r;
}

/* ------------------------------------------------------------ in a task */

static sigjmp_buf jb;
static volatile int sig_no, sig_code;
static int uffd = -1;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	sig_no = sig;
	sig_code = si->si_code;
	siglongjmp(jb, 1);
}

static const char *fault_name(void)
{
	static char buf[32];
	if (sig_no == SIGBUS)
		return "wait"; /* UFFD_FEATURE_SIGBUS: a fault the handler would serve */
	if (sig_no == SIGSEGV) {
		switch (sig_code) {
		case SEGV_MAPERR:
			return "segv:maperr";
		case SEGV_ACCERR:
			return "segv:accerr";
		case SEGV_MTESERR:
		case SEGV_MTEAERR:
			return "segv:mte";
		}
	}
	snprintf(buf, sizeof buf, "signal%d:%d", sig_no, sig_code);
	return buf;
}

static inline uint8_t *tagged(uint64_t a, unsigned tag)
{
	return (uint8_t *)(uintptr_t)((a & ((1UL << 56) - 1)) | ((uint64_t)tag << 56));
}

static inline void stg(uint8_t *p)
{
	__asm__ volatile("stg %0, [%0]" : : "r"(p) : "memory");
}

static inline unsigned ldg(uint64_t a)
{
	uint64_t v = a;
	__asm__ volatile("ldg %0, [%1]" : "+r"(v) : "r"(a) : "memory");
	return (v >> 56) & 0xf;
}

static uint64_t fnv_init(void)
{
	return 0xcbf29ce484222325ULL;
}

static uint64_t fnv_byte(uint64_t h, uint8_t b)
{
	return (h ^ b) * 0x100000001b3ULL;
}

static uint64_t fnv_bytes(const volatile uint8_t *p, size_t n)
{
	uint64_t h = fnv_init();
	for (size_t i = 0; i < n; i++)
		h = fnv_byte(h, p[i]);
	return h;
}

static uint64_t page_seed(uint64_t seed, unsigned index)
{
	return seed * 1000003ULL + index + 1;
}

static void fill(volatile uint8_t *p, uint64_t seed)
{
	for (size_t i = 0; i < PAGE; i++)
		p[i] = (uint8_t)(seed + 7 * i);
}

/* One page of a write (src/script/run.rs write_page); "ok" or a fault. */
static const char *write_page(uint64_t a, uint64_t seed, unsigned tag, int ramp, int mte)
{
	if (sigsetjmp(jb, 1))
		return fault_name();
	if (!mte) {
		fill(tagged(a, 0), seed);
		return "ok";
	}
	if (!ramp) {
		for (size_t g = 0; g < PAGE; g += 16)
			stg(tagged(a + g, tag));
		fill(tagged(a, tag), seed);
		return "ok";
	}
	for (size_t g = 0; g < PAGE; g += 16)
		stg(tagged(a + g, 0));
	fill(tagged(a, 0), seed);
	for (size_t g = 0; g < 256; g++)
		stg(tagged(a + g * 16, (tag + g) % 16));
	return "ok";
}

/* One page of a check (observe.rs check_token): the tags read with LDG,
 * the data read through pointers carrying them. */
static const char *check_page(uint64_t a, char *buf)
{
	uint8_t t[256];
	if (sigsetjmp(jb, 1))
		return fault_name();
	for (int g = 0; g < 256; g++)
		t[g] = ldg(a + g * 16);
	int uniform = 1, ramp = 1;
	for (int g = 0; g < 256; g++) {
		uniform &= t[g] == t[0];
		ramp &= t[g] == (t[0] + g) % 16;
	}
	uint64_t h;
	if (uniform) {
		h = fnv_bytes(tagged(a, t[0]), PAGE);
	} else {
		h = fnv_init();
		for (int g = 0; g < 256; g++) {
			uint64_t gh = fnv_bytes(tagged(a + g * 16, t[g]), 16);
			for (int b = 0; b < 8; b++)
				h = fnv_byte(h, (uint8_t)(gh >> (8 * b)));
		}
	}
	static uint64_t zero_hash;
	if (!zero_hash) {
		zero_hash = fnv_init();
		for (size_t i = 0; i < PAGE; i++)
			zero_hash = fnv_byte(zero_hash, 0);
	}
	char d[24], tg[24];
	if (h == zero_hash)
		strcpy(d, "0");
	else
		snprintf(d, sizeof d, "%016llx", (unsigned long long)h);
	if (uniform)
		snprintf(tg, sizeof tg, "%u", t[0]);
	else if (ramp)
		snprintf(tg, sizeof tg, "%u+", t[0]);
	else
		snprintf(tg, sizeof tg, "#%016llx", (unsigned long long)fnv_bytes(t, 256));
	sprintf(buf, "d=%s,t=%s", d, tg);
	return buf;
}

/* One access through an untagged pointer (a write or check with "=> segv"). */
static const char *probe(uint64_t a, int write)
{
	if (sigsetjmp(jb, 1))
		return fault_name();
	volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)a;
	if (write)
		*p = 0;
	else
		(void)*p;
	return "ok";
}

/* Page results with runs of one token written TOKEN*N. */
struct toks {
	char out[LINE];
	char last[64];
	int run;
};

static void tok_flush(struct toks *k)
{
	if (!k->run)
		return;
	size_t l = strlen(k->out);
	if (k->run == 1)
		snprintf(k->out + l, sizeof k->out - l, "%s%s", l ? " " : "", k->last);
	else
		snprintf(k->out + l, sizeof k->out - l, "%s%s*%d", l ? " " : "", k->last, k->run);
	k->run = 0;
}

static void tok_add(struct toks *k, const char *t)
{
	if (k->run && !strcmp(k->last, t)) {
		k->run++;
		return;
	}
	tok_flush(k);
	snprintf(k->last, sizeof k->last, "%s", t);
	k->run = 1;
}

static const char *errname(int e)
{
	static char buf[16];
	switch (e) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EINVAL: return "EINVAL";
	case ENOSPC: return "ENOSPC";
	case ENOSYS: return "ENOSYS";
	case ESRCH: return "ESRCH";
	case ENOTTY: return "ENOTTY";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	}
	snprintf(buf, sizeof buf, "E%d", e);
	return buf;
}

static void res(char *out, long r)
{
	strcpy(out, r < 0 ? errname(errno) : "ok");
}

static int prot_of(const char *s, int *mte)
{
	char b[32];
	snprintf(b, sizeof b, "%s", s);
	*mte = 0;
	char *c = strchr(b, ',');
	if (c) {
		if (strcmp(c, ",mte"))
			return -1;
		*c = 0;
		*mte = 1;
	}
	int p;
	if (!strcmp(b, "none"))
		p = PROT_NONE;
	else if (!strcmp(b, "r"))
		p = PROT_READ;
	else if (!strcmp(b, "rw"))
		p = PROT_READ | PROT_WRITE;
	else
		return -1;
	return p | (*mte ? PROT_MTE : 0);
}

static int open_uffd(void)
{
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE | UFFD_FEATURE_SIGBUS };
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/*
 * A command from the driver: "OP ADDR COUNT ARGS..." with addresses
 * resolved by the driver. Replies one line.
 */
static void do_cmd(char *c, char *out)
{
	char op[32];
	unsigned long long a = 0, n = 0, x = 0, y = 0, z = 0;
	int cpu = -1;
	sscanf(c, "%31s %d %llx %llu %llx %llu %llu", op, &cpu, &a, &n, &x, &y, &z);
	cpu_set_t all, one;
	if (cpu >= 0) {
		sched_getaffinity(0, sizeof all, &all);
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof one, &one) < 0) {
			sprintf(out, "ERROR on cpu %d: %s", cpu, strerror(errno));
			return;
		}
	}
	uint64_t len = n * PAGE;
	if (!strcmp(op, "mmap")) {
		/* x: prot, y: populate */
		void *p = mmap((void *)(uintptr_t)a, len, (int)x,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | (y ? MAP_POPULATE : 0), -1, 0);
		if (p == MAP_FAILED)
			res(out, -1);
		else if ((uint64_t)(uintptr_t)p != a)
			sprintf(out, "ERROR mmap placed the range at %p", p);
		else
			strcpy(out, "ok");
	} else if (!strcmp(op, "munmap")) {
		res(out, munmap((void *)(uintptr_t)a, len));
	} else if (!strcmp(op, "mprotect")) {
		res(out, mprotect((void *)(uintptr_t)a, len, (int)x));
	} else if (!strcmp(op, "madvise")) {
		res(out, madvise((void *)(uintptr_t)a, len, (int)x));
	} else if (!strcmp(op, "write")) {
		/* x: seed, y: tag | ramp << 8 | mte << 9 | probe << 10 */
		struct toks k = { 0 };
		for (unsigned i = 0; i < n; i++) {
			uint64_t pa = a + i * PAGE;
			if (y & (1 << 10))
				tok_add(&k, probe(pa, 1));
			else
				tok_add(&k, write_page(pa, page_seed(x, (unsigned)(z + i)), y & 0xff, !!(y & 256), !!(y & 512)));
		}
		tok_flush(&k);
		strcpy(out, k.out);
	} else if (!strcmp(op, "check")) {
		struct toks k = { 0 };
		char buf[96];
		for (unsigned i = 0; i < n; i++)
			tok_add(&k, x ? probe(a + i * PAGE, 0) : check_page(a + i * PAGE, buf));
		tok_flush(&k);
		strcpy(out, k.out);
	} else if (!strcmp(op, "register")) {
		if (uffd < 0) {
			int fd = open_uffd();
			if (fd < 0) {
				errno = -fd;
				sprintf(out, "ERROR userfaultfd: %s", errname(errno));
				goto done;
			}
			uffd = fd;
		}
		struct uffdio_register r = { .range = { a, len }, .mode = x };
		res(out, ioctl(uffd, UFFDIO_REGISTER, &r));
	} else if (!strcmp(op, "wp")) {
		struct uffdio_writeprotect w = { .range = { a, len }, .mode = x ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };
		res(out, ioctl(uffd, UFFDIO_WRITEPROTECT, &w));
	} else if (!strcmp(op, "zeropage")) {
		struct uffdio_zeropage zp = { .range = { a, len }, .mode = 0, .zeropage = 0x5a5a };
		long r = ioctl(uffd, UFFDIO_ZEROPAGE, &zp);
		sprintf(out, "%s %lld", r < 0 ? errname(errno) : "ok", (long long)zp.zeropage);
	} else if (!strcmp(op, "copy")) {
		/* The source pointer carries its first granule's tag, read with LDG. */
		unsigned tag = 0;
		if (!sigsetjmp(jb, 1))
			tag = ldg(x);
		struct uffdio_copy cp = { .dst = a, .src = (uint64_t)(uintptr_t)tagged(x, tag), .len = len, .mode = 0,
					  .copy = 0x5a5a };
		long r = ioctl(uffd, UFFDIO_COPY, &cp);
		sprintf(out, "%s %lld", r < 0 ? errname(errno) : "ok", (long long)cp.copy);
	} else if (!strcmp(op, "move")) {
		struct uffdio_move mv = { .dst = a, .src = x, .len = len, .mode = 0, .move = 0x5a5a };
		long r = ioctl(uffd, UFFDIO_MOVE, &mv);
		sprintf(out, "%s %lld", r < 0 ? errname(errno) : "ok", (long long)mv.move);
	} else {
		sprintf(out, "ERROR unknown command '%s'", op);
	}
done:
	if (cpu >= 0)
		sched_setaffinity(0, sizeof all, &all);
}

static uint64_t read_u64(int fd, uint64_t index)
{
	uint64_t v = 0;
	if (pread(fd, &v, 8, (off_t)(index * 8)) != 8)
		return 0;
	return v;
}

/* Per page of each range: "-", "z", "P<pfn>[x][w][h]" or "S<entry>[w]";
 * then "anon=N,swap=M" from smaps. */
static void state(struct task *t, char *out)
{
	int pm = open("/proc/self/pagemap", O_RDONLY);
	int kf = open("/proc/kpageflags", O_RDONLY);
	size_t l = 0;
	out[0] = 0;
	int order[MAXR];
	for (int i = 0; i < t->nr; i++) {
		int j = i;
		while (j > 0 && strcmp(t->r[order[j - 1]].name, t->r[i].name) > 0) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	/* ranges in name order, as the model's BTreeMap */
	for (int i = 0; i < t->nr; i++) {
		struct range *r = &t->r[order[i]];
		l += sprintf(out + l, "%s=", r->name);
		for (unsigned p = 0; p < r->pages; p++) {
			uint64_t e = read_u64(pm, (r->base + p * PAGE) / PAGE);
			if (p)
				out[l++] = ',';
			if (e & (1ULL << 63)) {
				uint64_t pfn = e & ((1ULL << 55) - 1);
				uint64_t f = read_u64(kf, pfn);
				if (f & (1ULL << 24)) {
					l += sprintf(out + l, "z");
					continue;
				}
				l += sprintf(out + l, "P%llx%s%s%s", (unsigned long long)pfn,
					     (e & (1ULL << 56)) ? "x" : "", (e & (1ULL << 57)) ? "w" : "",
					     (f & (1ULL << 22)) ? "h" : "");
			} else if (e & (1ULL << 62)) {
				l += sprintf(out + l, "S%llx%s", (unsigned long long)(e & ((1ULL << 55) - 1)),
					     (e & (1ULL << 57)) ? "w" : "");
			} else {
				l += sprintf(out + l, "%s", (e & (1ULL << 57)) ? "-w" : "-");
			}
		}
		out[l++] = ' ';
		out[l] = 0;
	}
	close(pm);
	close(kf);
	/* Only the VMAs of the scripts' ranges: the process's own stack, heap
	 * and data are not the script's (this kernel's agent has none). */
	long anon = 0, swp = 0, v;
	unsigned long long start = 0, end;
	int mine = 0;
	FILE *f = fopen("/proc/self/smaps", "r");
	char b[256];
	while (f && fgets(b, sizeof b, f)) {
		if (sscanf(b, "%llx-%llx ", &start, &end) == 2 && strchr(b, '-') < strchr(b, ' '))
		{
			mine = 0;
			for (int i = 0; i < t->nr; i++)
				mine |= start >= t->r[i].base && start < t->r[i].base + t->r[i].pages * PAGE;
		}
		else if (mine && sscanf(b, "Anonymous: %ld kB", &v) == 1)
			anon += v;
		else if (mine && sscanf(b, "Swap: %ld kB", &v) == 1)
			swp += v;
	}
	if (f)
		fclose(f);
	sprintf(out + l, "anon=%ld,swap=%ld", anon / 4, swp / 4);
}

static int read_line(int fd, char *buf, size_t max)
{
	size_t n = 0;
	while (n + 1 < max) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r <= 0)
			return -1;
		if (c == '\n')
			break;
		buf[n++] = c;
	}
	buf[n] = 0;
	return 0;
}

static void say(int fd, const char *s)
{
	size_t n = strlen(s);
	char *b = malloc(n + 2);
	memcpy(b, s, n);
	b[n] = '\n';
	if (write(fd, b, n + 1) != (ssize_t)(n + 1))
		_exit(3);
	free(b);
}

/* The loop of a task's process. */
static void serve(struct task *t)
{
	char c[LINE], out[LINE * 4];
	struct sigaction sa = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_NODEFER };
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	for (;;) {
		if (read_line(t->cmd[0], c, sizeof c) < 0)
			_exit(0);
		if (!strncmp(c, "fork ", 5)) {
			struct task *child = &tasks[atoi(c + 5)];
			pid_t p = fork();
			if (p < 0) {
				sprintf(out, "ERROR fork: %s", strerror(errno));
			} else if (p == 0) {
				/* Without UFFD_FEATURE_EVENT_FORK the child's VMAs lose
				 * their registration; its uffd would be the parent's. */
				if (uffd >= 0)
					close(uffd);
				uffd = -1;
				t = child;
				say(t->resp[1], "ok");
				continue;
			} else {
				sprintf(out, "ok %d", p);
			}
		} else if (!strcmp(c, "exit")) {
			_exit(0);
		} else if (!strcmp(c, "state")) {
			state(t, out);
		} else if (!strncmp(c, "ranges ", 7)) {
			/* "ranges NAME BASE PAGES MTE ..." : the driver's view, for state */
			char *p = c + 7;
			t->nr = 0;
			int used;
			struct range r;
			while (sscanf(p, "%31s %llx %u %d%n", r.name, (unsigned long long *)&r.base, &r.pages, &r.mte,
				      &used) == 4) {
				t->r[t->nr++] = r;
				p += used;
			}
			strcpy(out, "ok");
		} else {
			do_cmd(c, out);
		}
		say(t->resp[1], out);
	}
}

/* ------------------------------------------------------------ the driver */

static char *ask(struct task *t, const char *fmt, ...)
{
	static char buf[LINE * 4];
	char c[LINE];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c, sizeof c, fmt, ap);
	va_end(ap);
	say(t->cmd[1], c);
	if (read_line(t->resp[0], buf, sizeof buf) < 0)
		snprintf(buf, sizeof buf, "ERROR task %s died", t->name);
	return buf;
}

static void sync_ranges(struct task *t)
{
	char c[LINE];
	size_t l = 0;
	for (int i = 0; i < t->nr; i++)
		l += snprintf(c + l, sizeof c - l, " %s %llx %u %d", t->r[i].name, (unsigned long long)t->r[i].base,
			      t->r[i].pages, t->r[i].mte);
	ask(t, "ranges%s", c);
}

static int slot_of(const char *name)
{
	for (int i = 0; i < nnames; i++)
		if (!strcmp(names[i], name))
			return i;
	return -1;
}

static void note_name(const char *n)
{
	if (slot_of(n) < 0 && nnames < MAXT)
		snprintf(names[nnames++], 32, "%s", n);
}

static int write_sysfs(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	int r = write(fd, v, strlen(v)) == (ssize_t)strlen(v) ? 0 : -1;
	close(fd);
	return r;
}

static int swapped_on;

static long vmstat(const char *key)
{
	FILE *f = fopen("/proc/vmstat", "r");
	char k[64];
	long v, out = 0;
	while (f && fscanf(f, "%63s %ld", k, &v) == 2)
		if (!strcmp(k, key))
			out = v;
	if (f)
		fclose(f);
	return out;
}

static const char *const VM[] = { "pswpin", "pswpout", "thp_fault_alloc", "thp_collapse_alloc", "thp_split_pmd" };
#define NVM (sizeof VM / sizeof VM[0])
static long vm0[NVM];

/* Labels: the n-th distinct PFN (or swap entry) of a snapshot is pN (sN). */
static void relabel(const char *raw, char *out, char map[][24], int *nmap, char kind)
{
	char key[24];
	size_t i = 1;
	while (raw[i] && isxdigit((unsigned char)raw[i]))
		i++;
	snprintf(key, sizeof key, "%.*s", (int)i, raw);
	int j;
	for (j = 0; j < *nmap; j++)
		if (!strcmp(map[j], key))
			break;
	if (j == *nmap && *nmap < 4096)
		snprintf(map[(*nmap)++], 24, "%s", key);
	sprintf(out, "%c%d%s", kind, j, raw + i);
}

static char pmap[4096][24], smap[4096][24];

static void print_state(int idx)
{
	int np = 0, ns = 0;
	printf("STATE %d:", idx);
	/* tasks in name order, as the model's BTreeMap */
	int order[MAXT], n = 0;
	for (int i = 0; i < ntasks; i++)
		if (tasks[i].live)
			order[n++] = i;
	for (int a = 0; a < n; a++)
		for (int b = a + 1; b < n; b++)
			if (strcmp(tasks[order[a]].name, tasks[order[b]].name) > 0) {
				int x = order[a];
				order[a] = order[b];
				order[b] = x;
			}
	for (int o = 0; o < n; o++) {
		struct task *t = &tasks[order[o]];
		char *s = ask(t, "state");
		printf(" %s{", t->name);
		/* s: "r=TOK,TOK q=TOK anon=..,swap=.." ; relabel the tokens */
		char *save, *w = strtok_r(s, " ", &save);
		int first = 1;
		while (w) {
			char *eq = strchr(w, '=');
			if (!first)
				putchar(' ');
			first = 0;
			if (!strncmp(w, "anon=", 5)) {
				fputs(w, stdout);
			} else if (eq) {
				*eq = 0;
				printf("%s=", w);
				char *save2, *tk = strtok_r(eq + 1, ",", &save2);
				struct toks k = { 0 };
				while (tk) {
					char lab[40];
					if (tk[0] == 'P')
						relabel(tk, lab, pmap, &np, 'p');
					else if (tk[0] == 'S')
						relabel(tk, lab, smap, &ns, 's');
					else
						snprintf(lab, sizeof lab, "%s", tk);
					tok_add(&k, lab);
					tk = strtok_r(NULL, ",", &save2);
				}
				tok_flush(&k);
				fputs(k.out, stdout);
			}
			w = strtok_r(NULL, " ", &save);
		}
		putchar('}');
	}
	printf(" vm{");
	for (size_t i = 0; i < NVM; i++)
		printf("%s%s=%ld", i ? " " : "", VM[i], vmstat(VM[i]) - vm0[i]);
	printf("}\n");
	fflush(stdout);
}

static void reset_machine(void)
{
	if (swapped_on)
		swapoff("/dev/zram0");
	swapped_on = 0;
	write_sysfs("/sys/kernel/mm/transparent_hugepage/enabled", "madvise");
	/* khugepaged would collapse whenever its timer says: never, in a diff run */
	write_sysfs("/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs", "3600000");
	for (size_t i = 0; i < NVM; i++)
		vm0[i] = vmstat(VM[i]);
	next_addr = FIRST_ADDR;
}

static void start_task(struct task *t)
{
	pid_t p = fork();
	if (p < 0)
		die("ERROR fork: %s", strerror(errno));
	if (p == 0)
		serve(t); /* keeps every pipe: a task forked later needs its own */
	t->pid = p;
}

/* One statement: its result, or "ERROR ..." for the script's fault. */
static void run_stmt(struct stmt *st, char *out)
{
	char err[256] = "";
	if (st->kind == K_TASK) {
		int s = slot_of(st->arg);
		if (task_of(st->arg)) {
			sprintf(out, "ERROR task '%s' exists already", st->arg);
			return;
		}
		struct task *t = &tasks[s];
		t->live = 1;
		t->nr = 0;
		start_task(t);
		strcpy(out, "ok");
		return;
	}
	if (st->kind == K_SWAPON) {
		if (!swapped_on && swapon("/dev/zram0", 0) < 0) {
			sprintf(out, "ERROR swapon: %s", strerror(errno));
			return;
		}
		swapped_on = 1;
		strcpy(out, "ok");
		return;
	}
	if (st->kind == K_SWAPOFF) {
		if (swapped_on && swapoff("/dev/zram0") < 0) {
			sprintf(out, "ERROR swapoff: %s", strerror(errno));
			return;
		}
		swapped_on = 0;
		strcpy(out, "ok");
		return;
	}
	if (st->kind == K_SWAPCACHE) {
		strcpy(out, "ok"); /* Linux has no such switch; see linux-differences.txt */
		return;
	}
	if (st->kind == K_THP) {
		if (write_sysfs("/sys/kernel/mm/transparent_hugepage/enabled", st->arg) < 0)
			sprintf(out, "ERROR thp %s: %s", st->arg, strerror(errno));
		else
			strcpy(out, "ok");
		return;
	}
	struct task *t = task_of(st->task);
	if (!t) {
		sprintf(out, "ERROR no task '%s'", st->task);
		return;
	}
	char w[8][64];
	memset(w, 0, sizeof w);
	int nw = sscanf(st->text, "%63s %63s %63s %63s %63s %63s", w[0], w[1], w[2], w[3], w[4], w[5]);
	int probe_only = !strncmp(st->expect, "segv", 4);
	struct sel s, s2;
	uint64_t a = 0, a2 = 0;
	unsigned n = 0, n2 = 0;
	struct range *r = NULL;
	if (!strcmp(w[0], "mmap")) {
		if (range_of(t, w[1])) {
			sprintf(out, "ERROR task %s has a range '%s' already", t->name, w[1]);
			return;
		}
		unsigned pages = (unsigned)strtoul(w[2], NULL, 0);
		int prot = PROT_READ | PROT_WRITE, mte = 0, populate = 0;
		for (int i = 3; i < nw; i++) {
			if (!strncmp(w[i], "prot=", 5)) {
				prot = prot_of(w[i] + 5, &mte);
				if (prot < 0) {
					sprintf(out, "ERROR '%s' is not a protection", w[i] + 5);
					return;
				}
			} else if (!strcmp(w[i], "flags=populate")) {
				populate = 1;
			}
		}
		if (pages == 0) {
			strcpy(out, mmap((void *)(uintptr_t)next_addr, 0, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
					 0) == MAP_FAILED ? errname(errno) : "ok");
			return;
		}
		if (pages > 512) {
			sprintf(out, "ERROR a range is at most 512 pages (one PMD), not %u", pages);
			return;
		}
		uint64_t base = next_addr;
		next_addr = (base + pages * PAGE + HUGE - 1) / HUGE * HUGE + HUGE;
		r = &t->r[t->nr++];
		snprintf(r->name, sizeof r->name, "%s", w[1]);
		r->base = base;
		r->pages = pages;
		r->mte = mte;
		sync_ranges(t);
		strcpy(out, ask(t, "mmap %d %llx %u %x %d", st->cpu, (unsigned long long)base, pages, prot, populate));
		return;
	}
	if (!strcmp(w[0], "fork")) {
		int c = slot_of(w[1]);
		if (task_of(w[1]) || c < 0) {
			sprintf(out, "ERROR task '%s' exists already", w[1]);
			return;
		}
		struct task *ch = &tasks[c];
		char *rep = ask(t, "fork %d", c);
		if (strncmp(rep, "ok", 2)) {
			strcpy(out, rep);
			return;
		}
		ch->pid = atoi(rep + 3);
		ch->live = 1;
		memcpy(ch->r, t->r, sizeof t->r);
		ch->nr = t->nr;
		char buf[64];
		if (read_line(ch->resp[0], buf, sizeof buf) < 0) {
			strcpy(out, "ERROR the forked child did not start");
			return;
		}
		sync_ranges(ch);
		strcpy(out, "ok");
		return;
	}
	if (!strcmp(w[0], "exit")) {
		say(t->cmd[1], "exit");
		waitpid(t->pid, NULL, 0);
		t->live = 0;
		strcpy(out, "ok");
		return;
	}
	const char *sel1 = !strcmp(w[0], "uffd") ? w[2] : w[1];
	if (parse_sel(sel1, &s) < 0 || !(r = resolve(t, &s, &a, &n, err))) {
		sprintf(out, "ERROR %s", err[0] ? err : "a bad selector");
		return;
	}
	if (!strcmp(w[0], "munmap")) {
		strcpy(out, ask(t, "munmap %d %llx %u", st->cpu, (unsigned long long)a, n));
	} else if (!strcmp(w[0], "mprotect")) {
		int mte;
		int prot = prot_of(w[2], &mte);
		if (prot < 0) {
			sprintf(out, "ERROR '%s' is not a protection", w[2]);
			return;
		}
		strcpy(out, ask(t, "mprotect %d %llx %u %x", st->cpu, (unsigned long long)a, n, prot));
		if (!strcmp(out, "ok") && mte) {
			r->mte = 1; /* VM_MTE is sticky */
			sync_ranges(t);
		}
	} else if (!strcmp(w[0], "madvise")) {
		static const struct {
			const char *n;
			int v;
		} adv[] = { { "dontneed", MADV_DONTNEED }, { "pageout", MADV_PAGEOUT }, { "hugepage", MADV_HUGEPAGE },
			    { "nohugepage", MADV_NOHUGEPAGE }, { "collapse", MADV_COLLAPSE } };
		int v = -1;
		for (size_t i = 0; i < sizeof adv / sizeof adv[0]; i++)
			if (!strcmp(adv[i].n, w[2]))
				v = adv[i].v;
		if (v < 0) {
			sprintf(out, "ERROR unknown advice '%s'", w[2]);
			return;
		}
		strcpy(out, ask(t, "madvise %d %llx %u %x", st->cpu, (unsigned long long)a, n, v));
	} else if (!strcmp(w[0], "write")) {
		uint64_t seed = (uint64_t)st->line;
		unsigned tag = 0, ramp = 0, have_tag = 0;
		for (int i = 2; i < nw; i++) {
			if (!strncmp(w[i], "seed=", 5))
				seed = strtoull(w[i] + 5, NULL, 0);
			if (!strncmp(w[i], "tag=", 4)) {
				tag = (unsigned)strtoul(w[i] + 4, NULL, 0);
				ramp = strchr(w[i], '+') != NULL;
				have_tag = 1;
			}
		}
		if (!have_tag)
			tag = (unsigned)(seed % 15) + 1;
		strcpy(out, ask(t, "write %d %llx %u %llx %u %u", st->cpu, (unsigned long long)a, n, (unsigned long long)seed,
				tag | ramp << 8 | (unsigned)r->mte << 9 | (unsigned)probe_only << 10,
				(unsigned)((a - r->base) / PAGE)));
	} else if (!strcmp(w[0], "check")) {
		strcpy(out, ask(t, "check %d %llx %u %d", st->cpu, (unsigned long long)a, n, probe_only));
	} else if (!strcmp(w[0], "uffd")) {
		if (!strcmp(w[1], "register")) {
			int mode = 0;
			if (strstr(w[3], "missing"))
				mode |= UFFDIO_REGISTER_MODE_MISSING;
			if (strstr(w[3], "wp"))
				mode |= UFFDIO_REGISTER_MODE_WP;
			strcpy(out, ask(t, "register %d %llx %u %x", st->cpu, (unsigned long long)a, n, mode));
		} else if (!strcmp(w[1], "wp")) {
			strcpy(out, ask(t, "wp %d %llx %u %d", st->cpu, (unsigned long long)a, n, !strcmp(w[3], "on")));
		} else if (!strcmp(w[1], "zeropage")) {
			strcpy(out, ask(t, "zeropage %d %llx %u", st->cpu, (unsigned long long)a, n));
		} else if (!strcmp(w[1], "copy") || !strcmp(w[1], "move")) {
			if (parse_sel(w[3], &s2) < 0 || !resolve(t, &s2, &a2, &n2, err)) {
				sprintf(out, "ERROR %s", err[0] ? err : "a bad selector");
				return;
			}
			if (n2 != n) {
				sprintf(out, "ERROR %s has %u pages but %s has %u", w[2], n, w[3], n2);
				return;
			}
			strcpy(out, ask(t, "%s %d %llx %u %llx", w[1], st->cpu, (unsigned long long)a, n,
					(unsigned long long)a2));
		} else {
			sprintf(out, "ERROR unknown uffd operation '%s'", w[1]);
		}
	} else {
		sprintf(out, "ERROR unknown operation '%s'", w[0]);
	}
}

static void run_script(const char *file)
{
	static struct stmt st[1024];
	int n = parse(file, st, 1024);
	const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
	printf("DIFF-BEGIN %s\n", base);
	fflush(stdout);
	nnames = 0;
	for (int i = 0; i < n; i++) {
		if (st[i].kind == K_TASK)
			note_name(st[i].arg);
		if (st[i].kind == K_OP && !strncmp(st[i].text, "fork ", 5))
			note_name(st[i].text + 5);
	}
	ntasks = nnames;
	memset(tasks, 0, sizeof tasks);
	for (int i = 0; i < nnames; i++) {
		snprintf(tasks[i].name, sizeof tasks[i].name, "%s", names[i]);
		if (pipe(tasks[i].cmd) < 0 || pipe(tasks[i].resp) < 0)
			die("ERROR pipe: %s", strerror(errno));
	}
	reset_machine();
	char out[LINE * 4];
	for (int i = 0; i < n; i++) {
		run_stmt(&st[i], out);
		printf("OBS %d: line %d -> %s\n", i, st[i].line, out);
		if (!strncmp(out, "ERROR", 5))
			break;
		print_state(i);
	}
	for (int i = 0; i < ntasks; i++) {
		if (tasks[i].live) {
			say(tasks[i].cmd[1], "exit");
			waitpid(tasks[i].pid, NULL, 0);
			tasks[i].live = 0;
		}
		close(tasks[i].cmd[0]);
		close(tasks[i].cmd[1]);
		close(tasks[i].resp[0]);
		close(tasks[i].resp[1]);
	}
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	reset_machine();
	printf("DIFF-END %s\n", base);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	/* Tagged addresses and synchronous tag checks, all tags allowed for IRG;
	 * inherited by every task's process. */
	if (prctl(PR_SET_TAGGED_ADDR_CTRL, PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | (0xfffeUL << PR_MTE_TAG_SHIFT), 0, 0,
		  0) < 0)
		die("ERROR prctl(PR_SET_TAGGED_ADDR_CTRL): %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++)
		run_script(argv[i]);
	return 0;
}
