// urfloor: floor.c with io_uring, to see whether fewer system calls make a
// faster UDP relay (not a product: one client, one target, no errors
// handled). The ring receives and sends; per exchange the relay makes two
// io_uring_enter calls (submit the send and the next receive, wait) where
// floor makes six. A send's buffer is reused by the receive queued after it
// in the same submission: a UDP send completes within the submission.
//
//   cc -O2 -o urfloor urfloor.c && ./urfloor 16306 5301   # 127.0.0.1:16306 -> 127.0.0.1:5301
#include <arpa/inet.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdatomic.h>

static unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
static struct io_uring_sqe *sqes; static struct io_uring_cqe *cqes;
static unsigned pending;
static struct io_uring_sqe *get(void) {
	unsigned t = *sq_tail, i = t & *sq_mask;
	struct io_uring_sqe *s = &sqes[i]; memset(s, 0, sizeof *s);
	sq_array[i] = i; atomic_store_explicit((_Atomic unsigned *)sq_tail, t + 1, memory_order_release); pending++;
	return s;
}
int main(int argc, char **argv) {
	if (argc != 3) { fprintf(stderr, "usage: urfloor LISTEN-PORT TARGET-PORT\n"); return 2; }
	struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
	inet_pton(AF_INET, "127.0.0.1", &local.sin_addr);
	struct sockaddr_in target = local; target.sin_port = htons(atoi(argv[2]));
	int l = socket(AF_INET, SOCK_DGRAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);
	if (bind(l, (void *)&local, sizeof local) || connect(u, (void *)&target, sizeof target)) { perror("urfloor"); return 1; }
	struct io_uring_params p; memset(&p, 0, sizeof p);
	int fd = syscall(__NR_io_uring_setup, 8, &p);
	if (fd < 0) { perror("io_uring_setup"); return 1; }
	size_t sz = p.sq_off.array + p.sq_entries * 4, csz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (csz > sz) sz = csz;
	char *sq = mmap(0, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
	sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
	sq_head = (void *)(sq + p.sq_off.head); sq_tail = (void *)(sq + p.sq_off.tail); sq_mask = (void *)(sq + p.sq_off.ring_mask); sq_array = (void *)(sq + p.sq_off.array);
	cq_head = (void *)(sq + p.cq_off.head); cq_tail = (void *)(sq + p.cq_off.tail); cq_mask = (void *)(sq + p.cq_off.ring_mask); cqes = (void *)(sq + p.cq_off.cqes);
	static char a[65536], b[65536];
	struct sockaddr_in client; struct iovec aiov = {a, sizeof a}, biov;
	struct msghdr rmsg = {.msg_name = &client, .msg_namelen = sizeof client, .msg_iov = &aiov, .msg_iovlen = 1};
	struct msghdr smsg = {.msg_name = &client, .msg_namelen = sizeof client, .msg_iov = &biov, .msg_iovlen = 1};
	struct io_uring_sqe *s = get(); s->opcode = IORING_OP_RECVMSG; s->fd = l; s->addr = (unsigned long)&rmsg; s->user_data = 1;
	s = get(); s->opcode = IORING_OP_RECV; s->fd = u; s->addr = (unsigned long)b; s->len = sizeof b; s->user_data = 2;
	for (;;) {
		int r = syscall(__NR_io_uring_enter, fd, pending, 1, IORING_ENTER_GETEVENTS, 0, 0);
		if (r < 0) continue;
		pending = 0;
		unsigned h = *cq_head, t = atomic_load_explicit((_Atomic unsigned *)cq_tail, memory_order_acquire);
		for (; h != t; h++) {
			struct io_uring_cqe *c = &cqes[h & *cq_mask];
			int res = c->res;
			if (c->user_data == 1) {
				if (res >= 0) { s = get(); s->opcode = IORING_OP_SEND; s->fd = u; s->addr = (unsigned long)a; s->len = res; s->user_data = 3; }
				rmsg.msg_namelen = sizeof client;
				s = get(); s->opcode = IORING_OP_RECVMSG; s->fd = l; s->addr = (unsigned long)&rmsg; s->user_data = 1;
			} else if (c->user_data == 2) {
				if (res >= 0) { biov.iov_base = b; biov.iov_len = res; s = get(); s->opcode = IORING_OP_SENDMSG; s->fd = l; s->addr = (unsigned long)&smsg; s->user_data = 3; }
				s = get(); s->opcode = IORING_OP_RECV; s->fd = u; s->addr = (unsigned long)b; s->len = sizeof b; s->user_data = 2;
			}
		}
		atomic_store_explicit((_Atomic unsigned *)cq_head, h, memory_order_release);
	}
}
