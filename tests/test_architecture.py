"""The layers hold module by module: import-linter checks them package by package (pyproject.toml);
this checks that no module of ours is part of an import cycle, which the package view can hide."""

import grimp

PACKAGES = ("config", "newsletter", "papers", "bench")


def test_no_module_is_part_of_an_import_cycle() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = sorted(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    )
    assert cycles == []
