"""An editable class table: names, colours and which classes are rare defects."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QColorDialog,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_xrm_al.classes import PALETTE, ClassTable

NAME, COLOUR, RARE = range(3)


class ClassTableEditor(QWidget):
    """Rows of (class name, colour, rare?); defaults to the HBM table.

    Annotation id ``i + 1`` paints the class of row ``i``. Double-click a
    colour to change it.
    """

    def __init__(self, table: ClassTable | None = None) -> None:
        super().__init__()
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Class", "Colour", "Rare"])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COLOUR, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(RARE, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setToolTip("The label that paints this class.")
        self.table.setMaximumHeight(160)
        self.table.setToolTip(
            "Painting with label i gives the class of row i. Tick 'Rare' for the "
            "defect class the suggestions should hunt for (void). Double-click a "
            "colour to change it."
        )
        self.add_button = QPushButton("+")
        self.add_button.setToolTip("Add a class.")
        self.remove_button = QPushButton("−")
        self.remove_button.setToolTip("Remove the selected class.")
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self.add_button.clicked.connect(self.add_class)
        self.remove_button.clicked.connect(self.remove_selected)
        self.table.cellDoubleClicked.connect(self._on_double_click)
        self.set_classes(table or ClassTable.hbm())

    def set_classes(self, table: ClassTable) -> None:
        """Show ``table``."""
        self.table.setRowCount(0)
        for name, colour in zip(table.names, table.colours, strict=True):
            self._append(name, colour, name in table.rare)

    def classes(self) -> ClassTable:
        """The table shown; raises :class:`~napari_xrm_al.errors.XrmError` if invalid."""
        rows = range(self.table.rowCount())
        names = tuple(self.table.item(r, NAME).text() for r in rows)
        colours = tuple(self.table.item(r, COLOUR).text() for r in rows)
        rare = tuple(
            names[r]
            for r in rows
            if self.table.item(r, RARE).checkState() == Qt.CheckState.Checked
        )
        return ClassTable(names, colours, rare)

    def set_editable(self, editable: bool) -> None:
        """Allow edits (a new project) or not (an open project fixes its classes)."""
        self.table.setEnabled(editable)
        self.add_button.setEnabled(editable)
        self.remove_button.setEnabled(editable)

    def add_class(self) -> None:
        """Append a row with a fresh name and colour."""
        n = self.table.rowCount()
        self._append(f"class {n + 1}", PALETTE[n % len(PALETTE)], False)

    def remove_selected(self) -> None:
        """Remove the selected row (at least two classes stay)."""
        row = self.table.currentRow()
        if row >= 0 and self.table.rowCount() > 2:
            self.table.removeRow(row)

    def _append(self, name: str, colour: str, rare: bool) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, NAME, QTableWidgetItem(name))
        swatch = QTableWidgetItem(colour)
        swatch.setBackground(QColor(colour))
        swatch.setFlags(swatch.flags() & ~Qt.ItemFlag.ItemIsEditable)
        self.table.setItem(row, COLOUR, swatch)
        tick = QTableWidgetItem()
        tick.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
        tick.setCheckState(Qt.CheckState.Checked if rare else Qt.CheckState.Unchecked)
        self.table.setItem(row, RARE, tick)

    def set_colour(self, row: int, colour: str) -> None:
        """Give row ``row`` the colour ``'#rrggbb'``."""
        item = self.table.item(row, COLOUR)
        item.setText(colour)
        item.setBackground(QColor(colour))

    def _on_double_click(self, row: int, column: int) -> None:
        if column != COLOUR:
            return
        chosen = QColorDialog.getColor(
            QColor(self.table.item(row, COLOUR).text()), self
        )
        if chosen.isValid():
            self.set_colour(row, chosen.name())
