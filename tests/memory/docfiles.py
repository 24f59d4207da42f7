"""Documents made in the test with the libraries that write them (fpdf2, python-docx), never
taken from disk: a PDF of several pages with a known sentence on page 3, a DOCX with headings."""

from __future__ import annotations

from pathlib import Path

PAGE3_SENTENCE = "Tenants may keep one small cat but no dogs are allowed in the flat."


def make_pdf(path: Path, pages: int = 5, sentence_page: int = 3) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.multi_cell(
            0,
            8,
            f"Lease agreement, page {n}. The rent is paid monthly in advance.",
            new_x="LMARGIN",
            new_y="NEXT",
        )
        if n == sentence_page:
            pdf.multi_cell(0, 8, PAGE3_SENTENCE, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def make_scanned_pdf(path: Path, image: Path) -> Path:
    """A PDF whose only page is a picture: no text layer, as a scanner makes them."""
    from fpdf import FPDF
    from PIL import Image

    Image.new("RGB", (200, 100), "white").save(image)
    pdf = FPDF()
    pdf.add_page()
    pdf.image(str(image), x=10, y=10, w=100)
    pdf.output(str(path))
    return path


def make_encrypted_pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, "Nothing to see without the password.", new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def make_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("House rules", level=1)
    document.add_paragraph("These rules apply to every guest of the house.")
    document.add_heading("Garden", level=2)
    document.add_paragraph("The garden gate is locked at ten in the evening.")
    document.add_heading("Kitchen", level=2)
    document.add_paragraph("Wash the saucepans before you go to bed.")
    document.save(str(path))
    return path
