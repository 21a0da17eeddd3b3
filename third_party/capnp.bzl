"""Compiles Cap'n Proto schemas into a cc_library with Debian's capnp tool."""

def capnp_cc_library(name, srcs, deps = [], visibility = None):
    """A cc_library holding the C++ code generated from `srcs` (.capnp files).

    Each `foo.capnp` yields `foo.capnp.h` and `foo.capnp.c++` beside it in the
    output tree, so code includes "package/foo.capnp.h".

    Args:
      name: the cc_library's name.
      srcs: .capnp schema files in this package.
      deps: cc_library targets generated from schemas these import.
      visibility: visibility of the cc_library.
    """
    headers = [src + ".h" for src in srcs]
    sources = [src + ".c++" for src in srcs]
    native.genrule(
        name = name + "_capnp_compile",
        srcs = srcs,
        outs = headers + sources,
        # --src-prefix strips the package path so the outputs land beside
        # the schema in the output tree, where Bazel expects them.
        cmd = " ".join([
            "capnp compile",
            "--src-prefix=$$(dirname $(location %s))" % srcs[0],
            "-oc++:$(RULEDIR)",
            "$(SRCS)",
        ]),
        message = "Compiling Cap'n Proto schema %s" % ", ".join(srcs),
    )
    native.cc_library(
        name = name,
        srcs = sources,
        hdrs = headers,
        deps = deps + ["@system_libs//:capnp"],
        visibility = visibility,
    )
