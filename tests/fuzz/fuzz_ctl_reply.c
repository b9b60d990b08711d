// SPDX-License-Identifier: MIT
/*
 * Fuzzes ivsockctl's side of the control protocol (hostd/ivsockctl.c): the
 * reply framing, the JSON parse and the table printers that walk the
 * document. ivsockctl.c is compiled into this harness (its main renamed);
 * a server thread answers each request with the fuzz bytes. A mode bit
 * patches the reply header's type and seq to match, so the fuzzer reaches
 * the JSON walkers and not only the framing checks.
 */
#include <pthread.h>

#define main ivsockctl_main
#include "../../hostd/ivsockctl.c"
#undef main

#include "fuzz.h"

static char path[108];
static int lsock = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *reply;
static size_t reply_len;

static void *server(void *arg)
{
	(void)arg;
	for (;;) {
		struct ivsock_msg_hdr h;
		char argbuf[IVSOCK_CTL_REQ_MAX];
		int s = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);

		if (s < 0)
			continue;
		if (full_io(s, &h, sizeof(h), 0) == 0 && h.len <= sizeof(argbuf) &&
		    full_io(s, argbuf, h.len, 0) == 0) {
			pthread_mutex_lock(&lock);
			(void)full_io(s, reply, reply_len, 1);
			pthread_mutex_unlock(&lock);
		}
		close(s);
	}
	return NULL;
}

static void cleanup(void)
{
	unlink(path);
}

static void setup(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t t;

	snprintf(path, sizeof(path), "/tmp/ivsock-fuzz-ctlr-%d.sock", (int)getpid());
	unlink(path);
	strcpy(sa.sun_path, path);
	lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FUZZ_ASSERT(lsock >= 0);
	FUZZ_ASSERT(bind(lsock, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	FUZZ_ASSERT(listen(lsock, 8) == 0);
	atexit(cleanup);
	FUZZ_ASSERT(pthread_create(&t, NULL, server, NULL) == 0);
	sock_path = path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = {
		IVSOCK_CTL_DOMAIN_LIST, IVSOCK_CTL_VM_LIST, IVSOCK_CTL_VM_SHOW,
		IVSOCK_CTL_CHANNELS,
	};
	struct fuzz_in in = { data, size };
	uint8_t mode = fuzz_u8(&in);
	char name[] = "web", *argv[] = { name, NULL };
	int k = mode & 3;

	if (lsock < 0)
		setup();
	pthread_mutex_lock(&lock);
	free(reply);
	reply_len = in.n;
	reply = malloc(reply_len ? reply_len : 1);
	FUZZ_ASSERT(reply);
	memcpy(reply, in.p, in.n);
	if ((mode & 4) && reply_len >= sizeof(struct ivsock_msg_hdr)) {
		struct ivsock_msg_hdr h;

		memcpy(&h, reply, sizeof(h));
		h.magic = IVSOCK_MSG_MAGIC;
		h.version = IVSOCK_MSG_VERSION;
		h.reserved = 0;
		h.type = types[k];
		h.seq = (uint32_t)getpid();
		if (mode & 8)
			h.len = (uint32_t)(reply_len - sizeof(h));
		memcpy(reply, &h, sizeof(h));
	}
	pthread_mutex_unlock(&lock);
	opt_json = (mode >> 4) & 1;
	switch (k) {
	case 0: (void)cmd_domain_list(0, argv + 1); break;
	case 1: (void)cmd_vm_list(0, argv + 1); break;
	case 2: (void)cmd_vm_show(1, argv); break;
	default: (void)cmd_channels(0, argv + 1); break;
	}
	fflush(stdout);
	return 0;
}
