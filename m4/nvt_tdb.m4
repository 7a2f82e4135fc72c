dnl SPDX-License-Identifier: LGPL-3.0-or-later
dnl NVT_TDB_ARCHIVE: find tdb's static archive libtdb.a.
dnl --with-tdb-archive=PATH overrides; by default it is looked for in the
dnl libdir that pkg-config reports for tdb.  Sets and substitutes TDB_ARCHIVE.
AC_DEFUN([NVT_TDB_ARCHIVE], [
  AC_ARG_WITH([tdb-archive],
    [AS_HELP_STRING([--with-tdb-archive=PATH],
      [tdb's static archive (default: libtdb.a in tdb's pkg-config libdir)])],
    [TDB_ARCHIVE=$withval],
    [TDB_ARCHIVE="`$PKG_CONFIG --variable=libdir tdb 2>/dev/null`/libtdb.a"])
  AC_MSG_CHECKING([for tdb's static archive])
  AS_IF([test -f "$TDB_ARCHIVE"],
    [AC_MSG_RESULT([$TDB_ARCHIVE])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([tdb's static archive libtdb.a was not found (looked for $TDB_ARCHIVE).
  On Debian or Ubuntu: apt-get install libtdb-dev
  Elsewhere: pass --with-tdb-archive=PATH/TO/libtdb.a])])
  AS_IF([$AR t "$TDB_ARCHIVE" 2>/dev/null | grep -q '^io\.c.*\.o$\|^io\.o$'], [],
    [AC_MSG_ERROR([$TDB_ARCHIVE does not look like tdb's archive (no io.o member)])])
  AC_SUBST([TDB_ARCHIVE])
])
