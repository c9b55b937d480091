/* gRPC server reflection, grpc.reflection.v1alpha and v1 (the same protocol under two package
 * names, and the same wire format: both are served with the v1 messages).
 *
 * Answered from the serialized FileDescriptorSet the server was given (protoc
 * --include_imports over everything it serves): each file is kept as its own bytes, as they
 * came, and indexed by name and by every symbol it defines. A file is answered with the files
 * it imports, transitively, as gRPC's own reflection does, so that a client can build every
 * type it needs from one answer. No file served defines extensions: the questions about them
 * are answered NOT_FOUND (a known message type has no extension numbers). */
#include "grpc-internal.h"

#include "descriptor.pb-c.h"
#include "reflection.pb-c.h"

struct file {
        const char *name; /* the descriptor's */
        const uint8_t *data;
        size_t len;
        Google__Protobuf__FileDescriptorProto *fd;
        size_t *deps; /* indexes of the files it imports that the set holds */
        size_t n_deps;
};

struct symbol {
        char *name;
        size_t file;
        bool message; /* a message type (for all_extension_numbers_of_type) */
};

struct grpc_reflection {
        struct grpc_service services[2];
        uint8_t *set; /* a copy: the files point into it */
        size_t set_len;
        struct file *files;
        size_t n_files;
        struct symbol *symbols; /* sorted by name */
        size_t n_symbols, cap_symbols;
        const char *const *names;
        size_t n_names;
};

typedef Grpc__Reflection__V1__ServerReflectionRequest reflection_request;
typedef Grpc__Reflection__V1__ServerReflectionResponse reflection_response;

/* ---- the index ---- */

static int symbol_add(struct grpc_reflection *r, const char *prefix, const char *name,
                      size_t file, bool message)
{
        if (r->n_symbols == r->cap_symbols) {
                size_t cap = r->cap_symbols ? r->cap_symbols * 2 : 64;
                struct symbol *s = realloc(r->symbols, cap * sizeof *s);
                if (!s)
                        return -ENOMEM;
                r->symbols = s;
                r->cap_symbols = cap;
        }
        struct symbol *s = &r->symbols[r->n_symbols];
        if (asprintf_safe(&s->name, "%s%s", prefix, name) < 0)
                return -ENOMEM;
        s->file = file;
        s->message = message;
        r->n_symbols++;
        return 0;
}

static int index_enum(struct grpc_reflection *r, const char *prefix,
                      const Google__Protobuf__EnumDescriptorProto *e, size_t file)
{
        int k = symbol_add(r, prefix, e->name, file, false);
        /* Enum values are scoped beside their enum, as in C++. */
        for (size_t i = 0; k >= 0 && i < e->n_value; i++)
                k = symbol_add(r, prefix, e->value[i]->name, file, false);
        return k;
}

static int index_message(struct grpc_reflection *r, const char *prefix,
                         const Google__Protobuf__DescriptorProto *m, size_t file)
{
        _cleanup_free_ char *full = NULL, *inner = NULL;
        if (asprintf_safe(&full, "%s%s", prefix, m->name) < 0 ||
            asprintf_safe(&inner, "%s.", full) < 0)
                return -ENOMEM;
        int k = symbol_add(r, "", full, file, true);
        for (size_t i = 0; k >= 0 && i < m->n_field; i++)
                k = symbol_add(r, inner, m->field[i]->name, file, false);
        for (size_t i = 0; k >= 0 && i < m->n_oneof_decl; i++)
                k = symbol_add(r, inner, m->oneof_decl[i]->name, file, false);
        for (size_t i = 0; k >= 0 && i < m->n_enum_type; i++)
                k = index_enum(r, inner, m->enum_type[i], file);
        for (size_t i = 0; k >= 0 && i < m->n_nested_type; i++)
                k = index_message(r, inner, m->nested_type[i], file);
        return k;
}

static int index_file(struct grpc_reflection *r, size_t i)
{
        const Google__Protobuf__FileDescriptorProto *fd = r->files[i].fd;
        _cleanup_free_ char *prefix = NULL;
        if (asprintf_safe(&prefix, "%s%s", fd->package ? fd->package : "",
                          fd->package && fd->package[0] ? "." : "") < 0)
                return -ENOMEM;
        int k = 0;
        for (size_t j = 0; k >= 0 && j < fd->n_message_type; j++)
                k = index_message(r, prefix, fd->message_type[j], i);
        for (size_t j = 0; k >= 0 && j < fd->n_enum_type; j++)
                k = index_enum(r, prefix, fd->enum_type[j], i);
        for (size_t j = 0; k >= 0 && j < fd->n_service; j++) {
                const Google__Protobuf__ServiceDescriptorProto *s = fd->service[j];
                _cleanup_free_ char *inner = NULL;
                if (asprintf_safe(&inner, "%s%s.", prefix, s->name) < 0)
                        return -ENOMEM;
                k = symbol_add(r, prefix, s->name, i, false);
                for (size_t m = 0; k >= 0 && m < s->n_method; m++)
                        k = symbol_add(r, inner, s->method[m]->name, i, false);
        }
        return k;
}

static int symbol_cmp(const void *a, const void *b)
{
        return strcmp(((const struct symbol *)a)->name, ((const struct symbol *)b)->name);
}

static const struct symbol *symbol_find(const struct grpc_reflection *r, const char *name)
{
        /* A leading dot is how descriptors write a fully qualified type name. */
        if (name[0] == '.')
                name++;
        struct symbol key = { .name = (char *)name };
        return bsearch(&key, r->symbols, r->n_symbols, sizeof key, symbol_cmp);
}

static ssize_t file_find(const struct grpc_reflection *r, const char *name)
{
        for (size_t i = 0; i < r->n_files; i++)
                if (strcmp(r->files[i].name, name) == 0)
                        return (ssize_t)i;
        return -1;
}

/* A varint at *p, within end. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
        uint64_t v = 0;
        for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
                uint8_t b = *(*p)++;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *ret = v;
                        return 0;
                }
        }
        return -EINVAL;
}

/* FileDescriptorSet is `repeated FileDescriptorProto file = 1`: walked by hand, so that each
 * file keeps the bytes it came with. */
static int split_set(struct grpc_reflection *r)
{
        const uint8_t *p = r->set, *end = r->set + r->set_len;
        size_t cap = 0;
        while (p < end) {
                uint64_t tag, len;
                if (read_varint(&p, end, &tag) < 0 || tag != (1 << 3 | 2) ||
                    read_varint(&p, end, &len) < 0 || len > (uint64_t)(end - p))
                        return -EINVAL;
                if (r->n_files == cap) {
                        cap = cap ? cap * 2 : 8;
                        struct file *f = realloc(r->files, cap * sizeof *f);
                        if (!f)
                                return -ENOMEM;
                        r->files = f;
                }
                struct file *f = &r->files[r->n_files];
                *f = (struct file){ .data = p, .len = (size_t)len };
                f->fd = google__protobuf__file_descriptor_proto__unpack(NULL, f->len, f->data);
                if (!f->fd || !f->fd->name)
                        return -EINVAL;
                f->name = f->fd->name;
                r->n_files++;
                p += len;
        }
        return 0;
}

static int link_deps(struct grpc_reflection *r)
{
        for (size_t i = 0; i < r->n_files; i++) {
                struct file *f = &r->files[i];
                f->deps = calloc(f->fd->n_dependency + 1, sizeof *f->deps);
                if (!f->deps)
                        return -ENOMEM;
                for (size_t j = 0; j < f->fd->n_dependency; j++) {
                        ssize_t k = file_find(r, f->fd->dependency[j]);
                        if (k >= 0)
                                f->deps[f->n_deps++] = (size_t)k;
                }
        }
        return 0;
}

/* ---- answers ---- */

struct file_list {
        ProtobufCBinaryData *items;
        size_t n;
        bool *seen;
};

static void add_file(const struct grpc_reflection *r, struct file_list *l, size_t i)
{
        if (l->seen[i])
                return;
        l->seen[i] = true;
        l->items[l->n++] = (ProtobufCBinaryData){ .len = r->files[i].len,
                                                  .data = (uint8_t *)r->files[i].data };
        for (size_t j = 0; j < r->files[i].n_deps; j++)
                add_file(r, l, r->files[i].deps[j]);
}

static void answer(struct grpc_reflection *r, struct call *c, reflection_request *req)
{
        reflection_response resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
        Grpc__Reflection__V1__FileDescriptorResponse files =
                GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
        Grpc__Reflection__V1__ListServiceResponse list =
                GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
        Grpc__Reflection__V1__ExtensionNumberResponse ext =
                GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
        Grpc__Reflection__V1__ErrorResponse error = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
        _cleanup_free_ Grpc__Reflection__V1__ServiceResponse *services = NULL;
        _cleanup_free_ Grpc__Reflection__V1__ServiceResponse **service_ptrs = NULL;
        _cleanup_free_ ProtobufCBinaryData *items = NULL;
        _cleanup_free_ bool *seen = NULL;
        char msg[512], esc[300];
        ssize_t file = -1;
        const char *what = NULL;

        resp.valid_host = req->host;
        resp.original_request = req;
        switch (req->message_request_case) {
        case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
                services = calloc(r->n_names, sizeof *services);
                service_ptrs = calloc(r->n_names, sizeof *service_ptrs);
                if (!services || !service_ptrs) {
                        call_fail(c, API_RESOURCE_EXHAUSTED, "out of memory");
                        return;
                }
                for (size_t i = 0; i < r->n_names; i++) {
                        grpc__reflection__v1__service_response__init(&services[i]);
                        services[i].name = (char *)r->names[i];
                        service_ptrs[i] = &services[i];
                }
                list.n_service = r->n_names;
                list.service = service_ptrs;
                resp.message_response_case =
                        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
                resp.list_services_response = &list;
                break;
        case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
                file = file_find(r, req->file_by_filename);
                if (file < 0)
                        what = "file", snprintf(msg, sizeof msg, "file '%s': not known here",
                                                escape_value(req->file_by_filename, 256, esc,
                                                             sizeof esc));
                break;
        case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL: {
                const struct symbol *s = symbol_find(r, req->file_containing_symbol);
                if (s)
                        file = (ssize_t)s->file;
                else
                        what = "symbol", snprintf(msg, sizeof msg, "symbol '%s': not known here",
                                                  escape_value(req->file_containing_symbol, 256,
                                                               esc, sizeof esc));
                break;
        }
        case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
                what = "extension";
                snprintf(msg, sizeof msg, "extension %d of '%s': no extensions are served",
                         req->file_containing_extension ?
                                 req->file_containing_extension->extension_number :
                                 0,
                         escape_value(req->file_containing_extension &&
                                                      req->file_containing_extension
                                                              ->containing_type ?
                                              req->file_containing_extension->containing_type :
                                              "",
                                      256, esc, sizeof esc));
                break;
        case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE: {
                const struct symbol *s = symbol_find(r, req->all_extension_numbers_of_type);
                if (s && s->message) {
                        ext.base_type_name = s->name;
                        resp.message_response_case =
                                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
                        resp.all_extension_numbers_response = &ext;
                } else
                        what = "type", snprintf(msg, sizeof msg,
                                                "message type '%s': not known here",
                                                escape_value(req->all_extension_numbers_of_type,
                                                             256, esc, sizeof esc));
                break;
        }
        default:
                error.error_code = API_INVALID_ARGUMENT;
                error.error_message = (char *)"no request (message_request) set";
                resp.message_response_case =
                        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
                resp.error_response = &error;
                break;
        }
        if (what) {
                error.error_code = API_NOT_FOUND;
                error.error_message = msg;
                resp.message_response_case =
                        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
                resp.error_response = &error;
        } else if (file >= 0) {
                items = calloc(r->n_files, sizeof *items);
                seen = calloc(r->n_files, sizeof *seen);
                if (!items || !seen) {
                        call_fail(c, API_RESOURCE_EXHAUSTED, "out of memory");
                        return;
                }
                struct file_list l = { .items = items, .seen = seen };
                add_file(r, &l, (size_t)file);
                files.n_file_descriptor_proto = l.n;
                files.file_descriptor_proto = items;
                resp.message_response_case =
                        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
                resp.file_descriptor_response = &files;
        }
        (void)call_send(c, &resp.base);
}

static void reflection_input(struct call *c, const ProtobufCMessage *msg, void *userdata)
{
        if (!msg) {
                call_finish(c); /* the client is done asking */
                return;
        }
        answer(userdata, c, (reflection_request *)msg);
}

static void reflection_info(struct call *c, ProtobufCMessage *msg, void *userdata)
{
        answer(userdata, c, (reflection_request *)msg);
        protobuf_c_message_free_unpacked(msg, NULL);
        call_on_input(c, reflection_input, userdata);
}

static const struct grpc_method reflection_methods[] = {
        {
                .name = "ServerReflectionInfo",
                .request = &grpc__reflection__v1__server_reflection_request__descriptor,
                .response = &grpc__reflection__v1__server_reflection_response__descriptor,
                .client_streaming = true,
                .server_streaming = true,
                .read_only = true,
                .handle = reflection_info,
        },
};

void grpc_reflection_free(struct grpc_reflection *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_files; i++) {
                if (r->files[i].fd)
                        google__protobuf__file_descriptor_proto__free_unpacked(r->files[i].fd,
                                                                               NULL);
                free(r->files[i].deps);
        }
        free(r->files);
        for (size_t i = 0; i < r->n_symbols; i++)
                free(r->symbols[i].name);
        free(r->symbols);
        free(r->set);
        free(r);
}

int grpc_reflection_new(const uint8_t *set, size_t len, const char *const *names, size_t n_names,
                        struct grpc_reflection **ret)
{
        struct grpc_reflection *r = calloc(1, sizeof *r);
        if (!r)
                return log_error_errno(ENOMEM, "gRPC reflection: %m");
        r->names = names;
        r->n_names = n_names;
        r->services[0] = (struct grpc_service){
                .name = "grpc.reflection.v1alpha.ServerReflection",
                .methods = reflection_methods,
                .n_methods = ELEMENTSOF(reflection_methods),
                .userdata = r,
        };
        r->services[1] = r->services[0];
        r->services[1].name = "grpc.reflection.v1.ServerReflection";

        int k = 0;
        if (len > 0) {
                r->set = malloc(len);
                if (!r->set) {
                        grpc_reflection_free(r);
                        return log_error_errno(ENOMEM, "gRPC reflection: %m");
                }
                memcpy(r->set, set, len);
                r->set_len = len;
                k = split_set(r);
        }
        if (k >= 0)
                k = link_deps(r);
        for (size_t i = 0; k >= 0 && i < r->n_files; i++)
                k = index_file(r, i);
        if (k < 0) {
                grpc_reflection_free(r);
                if (k == -EINVAL)
                        return log_error_errno(k, "gRPC reflection: the descriptors given are "
                                                  "not a serialized FileDescriptorSet");
                return log_error_errno(k, "gRPC reflection: %m");
        }
        qsort(r->symbols, r->n_symbols, sizeof *r->symbols, symbol_cmp);
        *ret = r;
        return 0;
}

const struct grpc_service *grpc_reflection_services(struct grpc_reflection *r)
{
        return r->services;
}

bool grpc_reflection_has_symbol(const struct grpc_reflection *r, const char *name)
{
        return symbol_find(r, name) != NULL;
}
